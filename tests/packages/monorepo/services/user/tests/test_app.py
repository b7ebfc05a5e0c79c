import uuid

from user_manager import create_app


def test_create_user_answers_201_with_user_json(client):
    response = client.get("/api/user")

    assert response.status_code == 201
    assert response.is_json
    user = response.get_json()
    assert set(user) == {"user_id", "status", "message"}
    assert user["status"] == "created"
    assert user["message"] == "User created"


def test_user_id_is_a_uuid4_hex(client):
    user_id = client.get("/api/user").get_json()["user_id"]

    assert uuid.UUID(hex=user_id).version == 4
    assert user_id == uuid.UUID(user_id).hex


def test_each_user_gets_a_new_id(client):
    ids = {client.get("/api/user").get_json()["user_id"] for _ in range(20)}

    assert len(ids) == 20


def test_user_endpoint_rejects_other_methods(client):
    assert client.post("/api/user").status_code == 405


def test_healthz_answers_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_factory_works_without_config():
    app = create_app()

    assert not app.testing
    assert app.test_client().get("/healthz").status_code == 200
