"""HTTP service that creates users."""

from collections.abc import Mapping
from typing import Any

from flask import Flask

from user_manager import health, users

__all__ = ["create_app"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application; ``test_config`` overrides the defaults."""
    app = Flask(__name__)
    if test_config is not None:
        app.config.from_mapping(test_config)

    app.register_blueprint(users.bp)
    app.register_blueprint(health.bp)
    return app
