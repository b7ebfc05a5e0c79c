import os

from discount_calculator import discounted
from flask import Flask, jsonify


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz():
        return "ok"

    @app.get("/price/<int:cents>")
    def price(cents: int):
        return jsonify(cents=cents, discounted=discounted(cents, percent=10))

    return app


def main() -> None:
    create_app().run(host="0.0.0.0", port=int(os.environ.get("SHOP_ORDER_PORT", "8080")))
