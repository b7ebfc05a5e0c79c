import os
from wsgiref.simple_server import make_server

from stock.app import app

with make_server("0.0.0.0", int(os.environ.get("STOCK_PORT", "5000")), app) as server:
    server.serve_forever()
