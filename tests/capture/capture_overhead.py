"""CPU cost of capture per request, in-process (stable on a shared machine, unlike wrk).

    .venv/bin/python tests/capture/capture_overhead.py

Flask app called through its WSGI callable (werkzeug's test client: our WSGI wrapper, the
instrumentation and the hooks all run), spans ended into a no-op exporter. Reports CPU
microseconds per request for: uninstrumented, instrumented, instrumented + capture.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from hyperdx.opentelemetry import capture
from hyperdx.opentelemetry.capture import CaptureConfig

BODY = json.dumps(
    {"items": [{"id": i, "name": f"item-{i}", "password": f"p{i}"} for i in range(20)]}
).encode()


class _Null(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _make_app() -> Any:
    import flask

    app = flask.Flask("bench")

    @app.get("/")
    def hello() -> str:
        return "Hello, World!"

    @app.post("/echo")
    def echo() -> Any:
        return flask.Response(flask.request.get_data(), content_type="application/json")

    return app


def _measure(app: Any, path: str, n: int) -> float:
    client = app.test_client()
    headers = {"Authorization": "Bearer x", "Content-Type": "application/json"}

    def one() -> None:
        if path == "/echo":
            response = client.post(path, data=BODY, headers=headers)
        else:
            response = client.get(path)
        assert response.get_data()  # consume the body like a server does, then close
        response.close()

    for _ in range(50):
        one()
    gc.collect()
    start = time.process_time()
    for _ in range(n):
        one()
    return (time.process_time() - start) / n * 1e6


def run(n: int = 2000, rounds: int = 5) -> dict[str, dict[str, float]]:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_Null()))
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        for mode in ("uninstrumented", "instrumented", "instrumented+capture"):
            kwargs: dict[str, Any] = {"tracer_provider": provider}
            if mode == "instrumented+capture":
                cfg = CaptureConfig(enabled=True)
                kwargs.update(capture.instrumentor_kwargs("flask", cfg))
                capture.install(cfg)
            if mode != "uninstrumented":
                FlaskInstrumentor().instrument(**kwargs)
            try:
                app = _make_app()
                for path in ("/", "/echo"):
                    results.setdefault(path, {}).setdefault(mode, []).append(_measure(app, path, n))
            finally:
                if mode != "uninstrumented":
                    FlaskInstrumentor().uninstrument()
                capture.uninstall()
    # The minimum over rounds: on a shared machine noise only ever adds time.
    return {p: {m: min(v) for m, v in modes.items()} for p, modes in results.items()}


if __name__ == "__main__":
    for path, modes in run().items():
        base = modes["uninstrumented"]
        inst = modes["instrumented"]
        for mode, us in modes.items():
            print(
                f"{path:6s} {mode:22s} {us:7.1f} us/request CPU  "
                f"{base / us:.2f}x uninstrumented throughput  {inst / us:.2f}x instrumented"
            )
