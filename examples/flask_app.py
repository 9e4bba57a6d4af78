"""A small instrumented-by-the-agent Flask shop used by the README demo and the tests.

Run: opentelemetry-instrument python examples/flask_app.py   (PORT, default 5000)
"""

from __future__ import annotations

import logging
import os

import requests
from flask import Flask, jsonify
from opentelemetry import metrics

app = Flask(__name__)
log = logging.getLogger("shop")
checkouts = metrics.get_meter("shop").create_counter(
    "app.checkouts", unit="1", description="completed checkouts"
)
PORT = int(os.environ.get("PORT", "5000"))


@app.get("/")
def index() -> str:
    return "shop is open\n"


@app.get("/inventory")
def inventory() -> object:
    return jsonify(sku="sku-42", in_stock=3)


@app.get("/checkout")
def checkout() -> object:
    log.info("checkout started")
    stock = requests.get(f"http://127.0.0.1:{PORT}/inventory", timeout=5).json()
    if stock["in_stock"] < 5:
        log.warning("low stock for %s: %d left", stock["sku"], stock["in_stock"])
    checkouts.add(1, {"payment.method": "card"})
    return jsonify(order="ord-1001", sku=stock["sku"])


@app.get("/fail")
def fail() -> object:
    log.error("payment provider unreachable")
    raise RuntimeError("payment provider unreachable")


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=PORT, threaded=True)
