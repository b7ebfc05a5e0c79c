"""Orders: a Flask app pricing an order with the shared discount calculator."""
