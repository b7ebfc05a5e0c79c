DATABASE = "orders"
