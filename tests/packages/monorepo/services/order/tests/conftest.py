import random

import pytest

from order_manager import create_app


@pytest.fixture
def discount_seed():
    return 1234


@pytest.fixture
def app(discount_seed):
    return create_app({"TESTING": True, "DISCOUNT_RNG": random.Random(discount_seed)})


@pytest.fixture
def client(app):
    return app.test_client()
