from flask import Flask

from order_manager.views import orders


def create_app() -> Flask:
    app = Flask(__name__)
    app.register_blueprint(orders.blueprint)

    @app.get("/status")
    def status() -> str:
        return "ok"

    return app
