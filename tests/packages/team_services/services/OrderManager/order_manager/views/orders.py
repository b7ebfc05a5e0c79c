from flask import Blueprint, jsonify
from money import cents

blueprint = Blueprint("orders", __name__)


@blueprint.get("/orders/<int:amount>")
def order(amount: int):
    return jsonify(total=cents(amount))
