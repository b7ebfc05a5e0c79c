import uuid

from flask import Blueprint

bp = Blueprint("users", __name__, url_prefix="/api")


@bp.get("/user")
def create_user():
    user = {
        "user_id": uuid.uuid4().hex,
        "status": "created",
        "message": "User created",
    }
    return user, 201
