"""HTTP service that creates orders with a random discount."""

from collections.abc import Mapping
from typing import Any

from flask import Flask

from order_manager import health, orders

__all__ = ["create_app"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application; ``test_config`` overrides the defaults."""
    app = Flask(__name__)
    # None lets discount_calculator use its unpredictable default source; tests
    # pass a seeded random.Random here.
    app.config.from_mapping(DISCOUNT_RNG=None)
    if test_config is not None:
        app.config.from_mapping(test_config)

    app.register_blueprint(orders.bp)
    app.register_blueprint(health.bp)
    return app
