"""Where a Flask request's CPU goes under instrumentation, step by step, in-process.

Drives the hello-world WSGI app directly (no server, no sockets) and adds one layer at a
time: the contrib Flask instrumentation against no-op providers, then the SDK tracer, the
SDK meter, and finally the export path (stock BatchSpanProcessor + OTLP exporter, or ours).
Each step runs in its own process (instrumentation is process-global); prints JSON lines.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STEPS = [
    "bare",
    "instr-noop",
    "instr+sdk-tracer",
    "instr+tracer+meter",
    "+stock-export",
    "+fast-export",
]


def _environ() -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk",
    }


def _setup(step: str, endpoint: str) -> None:
    if step == "bare":
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    tp: Any = NoOpTracerProvider()
    mp: Any = NoOpMeterProvider()
    if step != "instr-noop":
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        resource = Resource.create({"service.name": "request-path"})
        tp = TracerProvider(resource=resource)
        if step != "instr+sdk-tracer":
            from opentelemetry.sdk.metrics import MeterProvider

            mp = MeterProvider(resource=resource)
        if step == "+stock-export":
            from opentelemetry.exporter.otlp.proto.http import Compression
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            exporter = OTLPSpanExporter(endpoint + "/v1/traces", compression=Compression.Gzip)
            tp.add_span_processor(BatchSpanProcessor(exporter))
        elif step == "+fast-export":
            from opentelemetry.exporter.otlp.proto.http import Compression

            from hyperdx.opentelemetry.export import make_span_processor

            tp.add_span_processor(
                make_span_processor(endpoint + "/v1/traces", compression=Compression.Gzip)
            )
    FlaskInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)


def measure(step: str, endpoint: str, n: int) -> dict[str, Any]:
    _setup(step, endpoint)
    sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))
    from flask_app import app

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        return None

    def one() -> None:
        body = app(_environ(), start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close:
            close()

    for _ in range(300):
        one()
    best = float("inf")
    for _ in range(3):  # best of three: other load on the machine only ever adds time
        c0 = time.process_time()
        for i in range(n):
            one()
            if i % 200 == 199:
                time.sleep(0.002)  # let the exporter keep up, as real traffic would
        best = min(best, (time.process_time() - c0) / n * 1e6)
    return {"step": step, "cpu_us_per_request": round(best, 1)}


def run_all(python: str, endpoint: str, n: int) -> list[dict[str, Any]]:
    rows = []
    for step in STEPS:
        out = subprocess.run(
            [python, __file__, "--step", step, "--endpoint", endpoint, "-n", str(n)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0:
            rows.append({"step": step, "error": out.stderr[-300:]})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--step", choices=STEPS, required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("-n", type=int, default=3000)
    args = ap.parse_args()
    print(json.dumps(measure(args.step, args.endpoint, args.n)), flush=True)


if __name__ == "__main__":
    main()
