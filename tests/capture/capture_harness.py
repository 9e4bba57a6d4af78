"""Helpers for the network-capture tests: real tracer provider, real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from hyperdx.opentelemetry import capture
from hyperdx.opentelemetry.capture import CaptureConfig

ON = CaptureConfig(enabled=True)

# Secrets that must never reach an exported span, whatever channel they travel in.
SECRETS = [f"SECRET{i:02d}" for i in range(1, 20)]
SECRET_HEADERS = [
    ("Authorization", "Bearer SECRET01"),
    ("Cookie", "sid=SECRET02; theme=dark"),
    ("X-Api-Key", "SECRET03"),
    ("X-Session-Token", "SECRET04"),
    ("Proxy-Authorization", "Basic SECRET05"),
]
SECRET_QUERY = "q=visible&access_token=SECRET06&apiKey=SECRET07&page=2"
SECRET_JSON = {
    "user": "bob",
    "password": "SECRET08",
    "profile": {"api_key": "SECRET09", "items": [{"token": "SECRET10"}, {"ok": 1}]},
    "credit_card": "SECRET11",
    "client_secret": {"nested": "SECRET12"},
}
SECRET_FORM = b"user=bob&passwd=SECRET13&ssn=SECRET14&note=hello"
SECRET_RESPONSE_JSON = {"id": 7, "session_id": "SECRET15", "auth": {"refresh": "SECRET16"}}
SECRET_SET_COOKIE = "session=SECRET17; HttpOnly"


class Tracing:
    """A real SDK TracerProvider exporting into memory, passed to instrumentors explicitly."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self, kind: SpanKind | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        return [s for s in spans if kind is None or s.kind == kind]

    def wait_span(self, kind: SpanKind, timeout: float = 5.0) -> ReadableSpan:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.spans(kind)
            if found:
                return found[-1]
            time.sleep(0.01)
        raise AssertionError(f"no {kind} span; have {[s.name for s in self.spans()]}")

    def clear(self) -> None:
        self.exporter.clear()


def span_text(span: ReadableSpan) -> str:
    return span.to_json()


def assert_no_secrets(span: ReadableSpan) -> None:
    text = span_text(span)
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"secrets {leaked} leaked into span:\n{text}"


@contextmanager
def instrumented(
    instrumentor: Any, name: str, tracing: Tracing, config: CaptureConfig | None = ON, **extra: Any
) -> Iterator[None]:
    """Instrument like the distro does: the instrumentor's kwargs plus ours; install() too."""
    kwargs: dict[str, Any] = {"tracer_provider": tracing.provider, **extra}
    if config is not None:
        kwargs = capture.merge_kwargs(kwargs, capture.instrumentor_kwargs(name, config))
        capture.install(config)
    instrumentor.instrument(**kwargs)
    try:
        yield
    finally:
        instrumentor.uninstrument()
        capture.uninstall()


@contextmanager
def serve_wsgi(app: Callable[..., Any]) -> Iterator[str]:
    from werkzeug.serving import WSGIRequestHandler, make_server

    WSGIRequestHandler.protocol_version = "HTTP/1.1"
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    import time

    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serve_aiohttp(make_app: Callable[[], Any]) -> Iterator[str]:
    from aiohttp import web

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(make_app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "aiohttp server did not start"
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# --- payloads shared by client and server tests -------------------------------------------

BIG_TEXT = ("0123456789abcdef" * 8192).encode()  # 128 KiB
BINARY = bytes(range(256)) * 64
LATIN1 = "café crème, naïve".encode("latin-1")
STREAM_CHUNKS = [f"chunk-{i:03d};".encode() * 50 for i in range(40)]


def payload(name: str) -> tuple[bytes, str]:
    """(body, content-type) served at /payload/<name>."""
    return {
        "big": (BIG_TEXT, "text/plain; charset=utf-8"),
        "binary": (BINARY, "application/octet-stream"),
        "latin1": (LATIN1, "text/plain; charset=iso-8859-1"),
        "json": (json.dumps(SECRET_RESPONSE_JSON).encode(), "application/json"),
        "stream": (b"".join(STREAM_CHUNKS), "text/plain; charset=utf-8"),
    }[name]
