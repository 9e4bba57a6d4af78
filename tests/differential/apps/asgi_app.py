"""Plain ASGI app of the differential suite (uvicorn), wrapped per mode."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from shared import STREAM_CHUNKS, context_payload, instrument_asgi

Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _json(send: Send, status: int, payload: Any, extra: list[Any] | None = None) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


async def raw_app(scope: dict[str, Any], receive: Any, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    routes = ("/items/", "/boom", "/stream", "/ctx", "/excluded/")
    if not any(path == r or (r.endswith("/") and path.startswith(r)) for r in routes):
        await _json(send, 404, {"detail": "Not Found"})
        return
    if scope["method"] not in ("GET", "HEAD"):
        await _json(send, 405, {"detail": "Method Not Allowed"}, [(b"allow", b"GET, HEAD")])
        return
    if path.startswith("/items/"):
        await _json(send, 200, {"item": path[len("/items/") :]})
    elif path.startswith("/excluded/"):
        await _json(send, 200, {"excluded": path[len("/excluded/") :]})
    elif path == "/boom":
        raise RuntimeError("boom from the app")
    elif path == "/ctx":
        await _json(send, 200, context_payload())
    else:
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in STREAM_CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


app = instrument_asgi(raw_app)
