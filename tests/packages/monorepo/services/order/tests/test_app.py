import random
import uuid

from discount_calculator import MAX_DISCOUNT, MIN_DISCOUNT, calculate_discount
from order_manager import create_app


def test_create_order_answers_201_with_order_json(client):
    response = client.get("/api/order")

    assert response.status_code == 201
    assert response.is_json
    order = response.get_json()
    assert set(order) == {"order_id", "status", "discount"}
    assert order["status"] == "created"
    assert uuid.UUID(hex=order["order_id"]).version == 4
    assert order["order_id"] == uuid.UUID(order["order_id"]).hex


def test_each_order_gets_a_new_id(client):
    ids = {client.get("/api/order").get_json()["order_id"] for _ in range(20)}

    assert len(ids) == 20


def test_discounts_follow_the_configured_rng(client, discount_seed):
    expected_rng = random.Random(discount_seed)
    expected = [calculate_discount(expected_rng) for _ in range(30)]

    discounts = [client.get("/api/order").get_json()["discount"] for _ in range(30)]

    assert discounts == expected


def test_default_discount_source_stays_within_bounds():
    client = create_app({"TESTING": True}).test_client()

    for _ in range(50):
        discount = client.get("/api/order").get_json()["discount"]
        assert type(discount) is int
        assert MIN_DISCOUNT <= discount <= MAX_DISCOUNT


def test_order_endpoint_rejects_other_methods(client):
    assert client.post("/api/order").status_code == 405


def test_healthz_answers_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_factory_without_config_uses_the_default_discount_source():
    app = create_app()

    assert not app.testing
    assert app.config["DISCOUNT_RNG"] is None
