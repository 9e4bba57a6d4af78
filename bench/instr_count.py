"""Instructions per request of the server request path, counted by valgrind (cachegrind).

CPU time on a shared machine is noisy; instruction counts are not. Each variant runs twice
under ``valgrind --tool=cachegrind``, with a few and with many requests; the difference divided
by the extra requests is the instructions one request costs (start-up and imports cancel out).

The instrumented variants use the distro's real pipeline (``configure_opentelemetry``: baggage
and hygiene processors, the batch span processor that encodes each span as it ends, the meter
provider with our views and temporality), so the export hand-off is counted too. Export itself
is kept out of the window: the batch and metric intervals are set far beyond the run, the queue
holds every span, and the process leaves with ``os._exit`` (nothing is flushed).

    .venv/bin/python bench/instr_count.py [--variants bare,lean] [--frameworks flask]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any

from asgi_driver import asgi_runner

HEADERS = {"HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "bench/1.0", "HTTP_ACCEPT": "*/*"}
QUIET_EXPORT = {
    "OTEL_BSP_SCHEDULE_DELAY": "3600000",
    "OTEL_BSP_MAX_QUEUE_SIZE": "16384",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16384",
    "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
}


def _providers(variant: str) -> tuple[Any, Any]:
    if variant == "bare":
        return None, None
    from hyperdx.opentelemetry import configure_opentelemetry

    pipeline = configure_opentelemetry(
        service_name="instr-count", endpoint="http://127.0.0.1:9", instrument=False
    )
    assert pipeline is not None
    return pipeline.tracer_provider, pipeline.meter_provider


def wsgi_runner(app: Any) -> Any:
    """``run(count)``: ``count`` GET /items/7 requests through the WSGI ``app``, in process."""

    def run(count: int) -> None:
        for _ in range(count):
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

    return run


def _flask(variant: str) -> Any:
    import flask

    app = flask.Flask("bench")

    @app.route("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return "ok"

    tp, mp = _providers(variant)
    if variant == "contrib":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor.instrument_app(app, tracer_provider=tp, meter_provider=mp)
    elif variant == "lean":
        from hyperdx.opentelemetry.server.flask import FlaskInstrumentor as Lean

        Lean.instrument_app(app, tracer_provider=tp, meter_provider=mp)

    return wsgi_runner(app)


def _fastapi(variant: str) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> Any:
        return PlainTextResponse("ok")

    tp, mp = _providers(variant)
    if variant == "contrib":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=tp, meter_provider=mp)
    elif variant == "lean":
        from hyperdx.opentelemetry.server.fastapi import FastAPIInstrumentor as Lean

        Lean.instrument_app(app, tracer_provider=tp, meter_provider=mp)
    return asgi_runner(app)


def child(framework: str, variant: str, n: int) -> None:
    os.environ.update(QUIET_EXPORT)
    run = _flask(variant) if framework == "flask" else _fastapi(variant)
    run(200)  # warm-up: per-app state, caches, the middleware stack
    run(n)
    sys.stdout.flush()
    os._exit(0)  # no flush, no export: only the request path is counted


def instructions(framework: str, variant: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=no",
                f"--cachegrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                framework,
                variant,
                "--requests",
                str(n),
            ],  # fmt: skip
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # same dict layouts in every run
        )
        found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
        assert found, proc.stderr[-2000:]
        return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--few", type=int, default=100)
    parser.add_argument("--many", type=int, default=1100)
    parser.add_argument("--variants", default="bare,lean")
    parser.add_argument("--frameworks", default="flask")
    parser.add_argument("--requests", type=int, default=0)
    parser.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "VARIANT"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.requests)
        return
    for framework in args.frameworks.split(","):
        for variant in args.variants.split(","):
            few = instructions(framework, variant, args.few)
            many = instructions(framework, variant, args.many)
            per = (many - few) / (args.many - args.few)
            row = {"framework": framework, "variant": variant, "instr_per_request": round(per)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
