"""Drive an ASGI app in-process with one fixed GET, for the CPU/instruction benches.

No server and no socket: what is measured is the app plus its instrumentation only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

_HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench/1.0"), (b"accept", b"*/*")]


def asgi_runner(
    app: Any,
    path: str = "/items/7",
    *,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> Callable[[int], None]:
    """A function that sends ``count`` ``method path`` requests through ``app`` on one loop."""
    sent_headers = _HEADERS if headers is None else headers

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def many(count: int) -> None:
        for _ in range(count):
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": method,
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "root_path": "",
                "query_string": b"",
                "headers": sent_headers,
                "client": ("127.0.0.1", 50000),
                "server": ("127.0.0.1", 8000),
            }
            await app(scope, receive, send)

    loop = asyncio.new_event_loop()
    return lambda count: loop.run_until_complete(many(count))
