from flask import Flask, jsonify
from money import cents

app = Flask(__name__)


@app.get("/healthz")
def healthz() -> str:
    return "ok"


@app.get("/stock")
def stock():
    return jsonify(value=cents(12345))
