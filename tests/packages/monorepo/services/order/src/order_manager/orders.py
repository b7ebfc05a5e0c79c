import uuid

from flask import Blueprint, current_app

from discount_calculator import calculate_discount

bp = Blueprint("orders", __name__, url_prefix="/api")


@bp.get("/order")
def create_order():
    order = {
        "order_id": uuid.uuid4().hex,
        "status": "created",
        "discount": calculate_discount(current_app.config["DISCOUNT_RNG"]),
    }
    return order, 201
