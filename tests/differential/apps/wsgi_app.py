"""Plain WSGI app of the differential suite (gunicorn sync worker), wrapped per mode."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from shared import STREAM_CHUNKS, context_payload, instrument_wsgi

StartResponse = Callable[..., Any]


def _json(start_response: StartResponse, status: str, payload: Any) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _chunks() -> Iterator[bytes]:
    yield from STREAM_CHUNKS


def raw_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    # PATH_INFO is the unquoted path, bytes carried as latin-1 (PEP 3333).
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    method = environ["REQUEST_METHOD"]
    routes = ("/items/", "/boom", "/stream", "/ctx", "/excluded/")
    if not any(path == r or (r.endswith("/") and path.startswith(r)) for r in routes):
        return _json(start_response, "404 Not Found", {"detail": "Not Found"})
    if method not in ("GET", "HEAD"):
        body = b'{"detail": "Method Not Allowed"}'
        start_response(
            "405 Method Not Allowed",
            [
                ("Content-Type", "application/json"),
                ("Allow", "GET, HEAD"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]
    if path.startswith("/items/"):
        return _json(start_response, "200 OK", {"item": path[len("/items/") :]})
    if path.startswith("/excluded/"):
        return _json(start_response, "200 OK", {"excluded": path[len("/excluded/") :]})
    if path == "/boom":
        raise RuntimeError("boom from the app")
    if path == "/ctx":
        return _json(start_response, "200 OK", context_payload())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _chunks()


app = instrument_wsgi(raw_app)
