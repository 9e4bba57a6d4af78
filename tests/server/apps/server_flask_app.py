"""Flask app for the real-server tests (gunicorn under opentelemetry-instrument)."""

from __future__ import annotations

from typing import Any

from flask import Flask, request

app = Flask(__name__)


@app.route("/items/<int:item_id>", methods=["GET", "POST"])
def item(item_id: int) -> Any:
    return {"id": item_id, "body": request.get_data(as_text=True)}


@app.route("/boom")
def boom() -> Any:
    raise RuntimeError("boom in the view")
