"""In-process requests for the server tests: the ASGI scope every ASGI test starts from, one
request run to completion, a lean instrumentor switched on into a ``Sink``, and the telemetry
read back. One place, so the tests differ only where their requests do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from oracle import Sink

from hyperdx.opentelemetry.server import semconv, telemetry

if TYPE_CHECKING:  # fast_histogram_run.py imports this module outside pytest
    import pytest

# The three semantic-convention modes (OTEL_SEMCONV_STABILITY_OPT_IN unset, "http", "http/dup").
MODES = [semconv.Mode(o, n, "") for o, n in [(True, False), (False, True), (True, True)]]
MODE_IDS = ["old", "new", "dup"]

HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench/1.0"), (b"accept", b"*/*")]
SCOPE: dict[str, Any] = {
    "type": "http",
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/items/7",
    "root_path": "",
    "query_string": b"a=1&b=%20x",
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}


def asgi_scope(method: str, path: str, headers: list[Any], **fields: Any) -> dict[str, Any]:
    """SCOPE's connection with this method, path and headers and no query; ``fields`` add to or
    replace any key."""
    return {
        **SCOPE,
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        **fields,
    }


def call_asgi(
    app: Any,
    scope: dict[str, Any],
    body: bytes = b"",
    app_errors: tuple[type[BaseException], ...] = (),
) -> list[dict[str, Any]]:
    """Run one request on a fresh event loop; the messages the app sent. ``app_errors``: what
    the app may re-raise after it answered (a framework's 500), kept out of the caller's way."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with contextlib.suppress(*app_errors):
        asyncio.run(app(scope, receive, send))
    return sent


@contextlib.contextmanager
def instrumented(instrumentor: type[Any], sink: Sink, **options: Any) -> Iterator[Sink]:
    """A lean instrumentor on for the block, its spans and metrics recorded into ``sink``."""
    instrumentor().instrument(
        tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider, **options
    )
    try:
        yield sink
    finally:
        instrumentor().uninstrument()


def active_requests(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> tuple[telemetry.ActiveRequests, Sink]:
    """An active-requests count on a fresh Sink, at most ``limit`` attribute sets before the
    overflow set."""
    monkeypatch.setattr(telemetry, "_MAX_ATTRIBUTE_SETS", limit)
    sink = Sink()
    return telemetry.ActiveRequests(sink.meter_provider.get_meter("t"), "{request}", "d"), sink


def server_spans(sink: Sink) -> list[dict[str, Any]]:
    return [s for s in sink.span_dicts() if s["kind"] == "SERVER"]


def metric_points(sink: Sink, name: str | None = None) -> dict[tuple[Any, ...], Any]:
    """Every point's value by its sorted attributes: of the metric ``name``, or of all."""
    data: Any = sink.reader.get_metrics_data()
    assert data is not None
    return {
        tuple(sorted(point.attributes.items())): point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if name is None or metric.name == name
        for point in metric.data.data_points
    }
