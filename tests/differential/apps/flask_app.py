"""Flask app of the differential suite (gunicorn sync worker)."""

from __future__ import annotations

import configure_first  # noqa: F401  (before the framework: see configure_first.py)

# isort: split
from collections.abc import Iterator

from flask import Flask, Response, jsonify
from shared import STREAM_CHUNKS, context_payload

app = Flask(__name__)


@app.get("/items/<item_id>")
def item(item_id: str) -> Response:
    return jsonify(item=item_id)


@app.get("/boom")
def boom() -> Response:
    raise RuntimeError("boom from the app")


@app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[bytes]:
        yield from STREAM_CHUNKS

    return Response(chunks(), mimetype="text/plain")


@app.get("/ctx")
def ctx() -> Response:
    return jsonify(context_payload())


@app.get("/excluded/<which>")
def excluded(which: str) -> Response:
    return jsonify(excluded=which)
