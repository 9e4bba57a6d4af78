"""Same requests through the lean WSGI and ASGI middlewares, once recording through the SDK's
histograms and once through our fast path; prints both exports as JSON.

Run as a subprocess (``python fast_histogram_run.py delta|cumulative``): the semantic-convention
mode (``OTEL_SEMCONV_STABILITY_OPT_IN``) is read once per process, so each mode needs its own.

Durations: both middlewares read the time through their module's ``default_timer``, which the
script replaces by a scripted clock (restarted for each provider), so both runs measure the same
durations; everything else is the real request path.

Timestamps cannot be equal between two providers, so each one is replaced by what it means:
``R<n>`` (while the requests of round n ran: when the SDK created an attribute set's
aggregation) or ``C<n>`` (while collection n ran: the end of every point, and a delta point's
start after the first collection).  Any other value is printed as a raw number and fails the test.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from _inprocess import asgi_scope, call_asgi
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from hyperdx.opentelemetry import metrics_fast
from hyperdx.opentelemetry.server import asgi as asgi_module
from hyperdx.opentelemetry.server import wsgi as wsgi_module
from hyperdx.opentelemetry.server.asgi import OpenTelemetryASGIMiddleware
from hyperdx.opentelemetry.server.wsgi import OpenTelemetryWSGIMiddleware

# (method, path, status, request body, Host header); the rounds use different subsets, so some
# series get no new measurement in some intervals.
REQUESTS = [
    ("GET", "/items/1", 200, b"", "127.0.0.1:8000"),
    ("GET", "/items/2", 200, b"", "127.0.0.1:8000"),
    ("POST", "/items", 201, b'{"name": "x"}', "127.0.0.1:8000"),
    ("GET", "/missing", 404, b"", "example.test"),
    ("PUT", "/items/3", 500, b"abc", "127.0.0.1:8000"),
    ("FOO", "/odd", 200, b"", "127.0.0.1:8000"),
    ("GET", "/items/1", 200, b"", "127.0.0.1:8000"),
]
ROUNDS = [
    REQUESTS,
    REQUESTS[:2],
    [],
    [*REQUESTS[3:] * 3, ("DELETE", "/items/9", 503, b"", "h.test")],
]


class ScriptedClock:
    """Seconds that advance by a different, repeatable step on each call."""

    def __init__(self) -> None:
        self.calls = 0
        self.now = 1000.0

    def __call__(self) -> float:
        self.calls += 1
        self.now += (self.calls * 7919 % 1013) / 997.0 * (0.3 if self.calls % 3 else 0.004)
        return self.now


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    status = int(environ["HTTP_X_STATUS"])
    start_response(f"{status} X", [("Content-Type", "text/plain")])
    return [b"hello" * status]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    headers = dict(scope["headers"])
    status = int(headers.get(b"x-status", b"200"))
    body = b"hello" * status
    await receive()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def drive_wsgi(app: Any, method: str, path: str, status: int, body: bytes, host: str) -> None:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "HTTP_X_STATUS": str(status),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
    }
    b"".join(app(environ, lambda *args: None))


def drive_asgi(app: Any, method: str, path: str, status: int, body: bytes, host: str) -> None:
    headers = [(b"host", host.encode()), (b"x-status", str(status).encode())]
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    call_asgi(app, asgi_scope(method, path, headers, asgi={"version": "3.0"}), body)


def run(fast: bool, temporality: AggregationTemporality) -> list[Any]:
    clock = ScriptedClock()
    wsgi_module.default_timer = asgi_module.default_timer = clock  # type: ignore[attr-defined]
    reader = InMemoryMetricReader(preferred_temporality={Histogram: temporality})
    meter_provider = MeterProvider(
        metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter()
    )
    if fast:
        metrics_fast.adopt(meter_provider)
    tracer_provider = TracerProvider()
    wsgi = OpenTelemetryWSGIMiddleware(
        wsgi_app, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    asgi = OpenTelemetryASGIMiddleware(
        asgi_app, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    histograms = [wsgi.telemetry.duration_old, wsgi.telemetry.duration_new]
    histograms += [asgi.telemetry.request_size_old, asgi.telemetry.request_size_new]
    kinds = {type(h).__name__ for h in histograms if h is not None}
    assert kinds == {"FastHistogram" if fast else "_Histogram"}, kinds
    windows: list[tuple[str, int, int]] = []
    collections = []
    for index, requests in enumerate(ROUNDS, 1):
        start = time.time_ns()
        for request in requests:
            drive_wsgi(wsgi, *request)
            drive_asgi(asgi, *request)
        assert clock.calls >= 2 * len(requests)
        collecting = time.time_ns()
        data = reader.get_metrics_data()
        windows += [(f"R{index}", start, collecting), (f"C{index}", collecting, time.time_ns())]
        exported = histograms_only(json.loads(data.to_json())) if data is not None else None
        collections.append(exported)
    return [label(c, windows) for c in collections]


def histograms_only(data: Any) -> Any:
    """The histograms (the active-requests counter is not recorded through them)."""
    for resource in data["resource_metrics"]:
        for scope in resource["scope_metrics"]:
            scope["metrics"] = [m for m in scope["metrics"] if "bucket_counts" in json.dumps(m)]
    return data


def label(value: Any, windows: list[tuple[str, int, int]]) -> Any:
    if isinstance(value, dict):
        return {
            key: time_label(item, windows)
            if key.endswith("time_unix_nano")
            else label(item, windows)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [label(item, windows) for item in value]
    return value


def time_label(nanos: int, windows: list[tuple[str, int, int]]) -> Any:
    for name, start, end in windows:
        if start <= nanos <= end:
            return name
    return nanos


if __name__ == "__main__":
    chosen = AggregationTemporality[sys.argv[1].upper()]
    print(json.dumps({"sdk": run(False, chosen), "fast": run(True, chosen)}))
