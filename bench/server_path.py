"""CPU per request of the server request path: bare vs contrib's vs ours (in-process).

Drives a Flask app (direct WSGI calls) and a FastAPI app (direct ASGI calls) with no server and
no sockets, so only the instrumentation's own work differs. Each variant runs in its own
process (instrumentors patch classes process-wide) with SDK tracer and meter providers whose
span processor drops spans (export cost is measured elsewhere). Prints one JSON line per run
and a table of microseconds of CPU per request.

    .venv/bin/python bench/server_path.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from typing import Any

from asgi_driver import asgi_runner

VARIANTS = ("bare", "contrib", "lean")
FRAMEWORKS = ("flask", "fastapi")
HEADERS = {"HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "bench/1.0", "HTTP_ACCEPT": "*/*"}


def _providers() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    class Drop(SpanProcessor):
        pass

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(Drop())
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


def _flask(variant: str, n: int) -> float:
    import flask

    app = flask.Flask("bench")

    @app.route("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return "ok"

    tp, mp = _providers()
    if variant == "contrib":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor.instrument_app(app, tracer_provider=tp, meter_provider=mp)
    elif variant == "lean":
        from hyperdx.opentelemetry.server.flask import FlaskInstrumentor as Lean

        Lean.instrument_app(app, tracer_provider=tp, meter_provider=mp)

    def one() -> None:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/items/7",
            "QUERY_STRING": "",
            "RAW_URI": "/items/7",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": "50000",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            **HEADERS,
        }
        for _ in app(environ, lambda *a: None):
            pass

    return _measure(one, n)


def _fastapi(variant: str, n: int) -> float:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> Any:
        return PlainTextResponse("ok")

    tp, mp = _providers()
    if variant == "contrib":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=tp, meter_provider=mp)
    elif variant == "lean":
        from hyperdx.opentelemetry.server.fastapi import FastAPIInstrumentor as Lean

        Lean.instrument_app(app, tracer_provider=tp, meter_provider=mp)
    run = asgi_runner(app)
    run(200)  # warm-up (builds the middleware stack)
    start = time.process_time()
    run(n)
    return (time.process_time() - start) / n * 1e6


def _measure(one: Any, n: int) -> float:
    for _ in range(200):
        one()
    start = time.process_time()
    for _ in range(n):
        one()
    return (time.process_time() - start) / n * 1e6


def child(framework: str, variant: str, n: int) -> None:
    us = _flask(variant, n) if framework == "flask" else _fastapi(variant, n)
    print(json.dumps({"framework": framework, "variant": variant, "us_per_request": us}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (best is kept)")
    parser.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "VARIANT"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.requests)
        return
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeat):
        for framework in FRAMEWORKS:
            for variant in VARIANTS:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        framework,
                        variant,
                        "--requests",
                        str(args.requests),
                    ],  # fmt: skip
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(out.stdout.strip().splitlines()[-1])
                print(json.dumps(row))
                key = (framework, variant)
                best[key] = min(best.get(key, float("inf")), row["us_per_request"])
    print(f"\n{'framework':<10}{'bare':>10}{'contrib':>12}{'lean':>10}{'added contrib':>16}"
          f"{'added lean':>13}")  # fmt: skip
    for framework in FRAMEWORKS:
        bare, contrib, lean = (best[(framework, v)] for v in VARIANTS)
        print(f"{framework:<10}{bare:>10.1f}{contrib:>12.1f}{lean:>10.1f}"
              f"{contrib - bare:>16.1f}{lean - bare:>13.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
