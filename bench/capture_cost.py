"""What advanced network capture costs per request, in-process: CPU us and instructions.

A Flask app and a Django app (WSGI callables, as Gunicorn calls them: iterate the response, then
``close()``) and a FastAPI app (ASGI, one event loop) are driven without a server or socket,
through the distro's real pipeline (``configure_opentelemetry``, lean server instrumentation,
batch processors whose export never runs within the window), with capture off and on. Two requests:

* ``hello``: ``GET /`` with only a ``Host`` header, answered "Hello, World!" (what wrk sends to
  the bench's hello-world apps);
* ``json``: ``POST /echo`` with a browser-like set of headers (Authorization, Cookie, ...) and a
  1 KiB JSON body holding a password, echoed back: the redaction path at work.

Each variant runs in its own process (capture is process-wide). CPU time is the minimum over
rounds (noise on a shared machine only ever adds time). ``--instructions`` also counts
instructions per request with cachegrind (a run with few and one with many requests; the
difference over the extra requests), which is stable while the machine is busy.

    .venv/bin/python bench/capture_cost.py [--frameworks flask,django,fastapi]
        [--requests hello,json] [--instructions] [--n 3000] [--rounds 5]
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
import time
from collections.abc import Callable
from typing import Any

from asgi_driver import asgi_runner

QUIET_EXPORT = {
    "OTEL_BSP_SCHEDULE_DELAY": "3600000",
    "OTEL_BSP_MAX_QUEUE_SIZE": "200000",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "200000",
    "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
    "OTEL_LOGS_EXPORTER": "none",
}
BODY = json.dumps(
    {
        "user": "ada",
        "password": "hunter2",
        "items": [{"id": i, "name": f"item-{i}", "qty": i % 3} for i in range(16)],
        "note": "plain text that mentions nothing",
    }
).encode()
BROWSER_HEADERS = [
    ("host", "127.0.0.1:8000"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench/1.0"),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", "en-US,en;q=0.9"),
    ("authorization", "Bearer abc.def.ghi"),
    ("cookie", "session=s3cr3t; theme=dark"),
    ("x-request-id", "7f7c1f2e-5b1a-4d7e-9c55-0d7d8f0a1b2c"),
]
SECRETS = ("hunter2", "abc.def.ghi", "s3cr3t")


def _pipeline(capture: bool, entry: str) -> tuple[Any, Any, dict[str, Any]]:
    os.environ.update(QUIET_EXPORT)
    from hyperdx.opentelemetry import configure_opentelemetry
    from hyperdx.opentelemetry.instrumentor_arguments import capture_config

    pipeline = configure_opentelemetry(
        service_name="capture-cost",
        endpoint="http://127.0.0.1:9",
        instrument=False,
        enable_advanced_network_capture=capture,
    )
    assert pipeline is not None
    kwargs: dict[str, Any] = {}
    if capture:
        from hyperdx.opentelemetry import capture as cap

        kwargs = cap.instrumentor_kwargs(entry, capture_config(pipeline.settings))
    return pipeline.tracer_provider, pipeline.meter_provider, kwargs


def _flask(capture: bool, request: str) -> Callable[[int], None]:
    import flask

    app = flask.Flask("bench")

    @app.route("/")
    def hello() -> str:
        return "Hello, World!"

    @app.post("/echo")
    def echo() -> Any:
        return flask.Response(flask.request.get_data(), content_type="application/json")

    tp, mp, kwargs = _pipeline(capture, "flask")
    from hyperdx.opentelemetry.server.flask import FlaskInstrumentor

    FlaskInstrumentor.instrument_app(app, tracer_provider=tp, meter_provider=mp, **kwargs)

    return _wsgi_runner(app, request)


def _wsgi_runner(app: Callable[..., Any], request: str) -> Callable[[int], None]:
    """Call a WSGI app as Gunicorn's sync worker does, ``count`` times."""
    base = {
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if request == "hello":
        base.update(REQUEST_METHOD="GET", PATH_INFO="/", RAW_URI="/", HTTP_HOST="127.0.0.1:8000")
        body = b""
    else:
        base.update(REQUEST_METHOD="POST", PATH_INFO="/echo", RAW_URI="/echo")
        for name, value in BROWSER_HEADERS:
            base["HTTP_" + name.upper().replace("-", "_")] = value
        base.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(BODY)))
        body = BODY

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        return None

    def run(count: int) -> None:
        for _ in range(count):
            environ = dict(base)
            environ["wsgi.input"] = io.BytesIO(body)
            result = app(environ, start_response)
            try:
                for _chunk in result:
                    pass
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

    return run


def _django(capture: bool, request: str) -> Callable[[int], None]:
    import types

    import django
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import path

    def hello(req: Any) -> Any:
        return HttpResponse("Hello, World!")

    def echo(req: Any) -> Any:
        return HttpResponse(req.body, content_type="application/json")

    urls = types.ModuleType("capture_cost_urls")
    urls.urlpatterns = [path("", hello), path("echo", echo)]  # type: ignore[attr-defined]
    sys.modules[urls.__name__] = urls
    settings.configure(
        SECRET_KEY="bench-only-not-a-secret",
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=urls.__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()
    tp, mp, kwargs = _pipeline(capture, "django")
    from hyperdx.opentelemetry.server.django import DjangoInstrumentor

    DjangoInstrumentor().instrument(tracer_provider=tp, meter_provider=mp, **kwargs)
    from django.core.wsgi import get_wsgi_application

    return _wsgi_runner(get_wsgi_application(), request)


def _fastapi(capture: bool, request: str) -> Callable[[int], None]:
    from fastapi import FastAPI, Request
    from fastapi.responses import PlainTextResponse, Response

    app = FastAPI()

    @app.get("/")
    async def hello() -> Any:
        return PlainTextResponse("Hello, World!")

    @app.post("/echo")
    async def echo(req: Request) -> Any:
        return Response(await req.body(), media_type="application/json")

    tp, mp, kwargs = _pipeline(capture, "fastapi")
    from hyperdx.opentelemetry.server.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=tp, meter_provider=mp, **kwargs)

    if request == "hello":
        method, path, body = "GET", "/", b""
        headers = [(b"host", b"127.0.0.1:8000")]
    else:
        method, path, body = "POST", "/echo", BODY
        headers = [(n.encode(), v.encode()) for n, v in BROWSER_HEADERS] + [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ]

    return asgi_runner(app, path, method=method, headers=headers, body=body)


def _runner(framework: str, capture: bool, request: str) -> Callable[[int], None]:
    return {"flask": _flask, "django": _django, "fastapi": _fastapi}[framework](capture, request)


def dump_attributes(framework: str, capture: bool, request: str) -> None:
    """Print the attributes of one request's server span (to compare captured output before and
    after a change, and to see that no secret got through)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    run = _runner(framework, capture, request)
    memory = InMemorySpanExporter()
    provider: Any = trace.get_tracer_provider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    run(1)
    (span,) = memory.get_finished_spans()
    attrs = dict(span.attributes or {})
    text = repr(attrs)
    leaked = [s for s in SECRETS if s in text]
    report = {"attributes": attrs, "order": list(attrs), "leaked": leaked}
    print(json.dumps(report, indent=1, sort_keys=True))
    sys.stdout.flush()
    os._exit(0)


def child(framework: str, capture: bool, request: str, n: int, rounds: int, timed: bool) -> None:
    run = _runner(framework, capture, request)
    run(300)  # warm-up: per-app state, caches, the middleware stack
    if not timed:  # cachegrind: just run n requests
        run(n)
        sys.stdout.flush()
        os._exit(0)
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        run(n)
        best = min(best, (time.process_time() - start) / n * 1e6)
    print(json.dumps({"us": best}))
    sys.stdout.flush()
    os._exit(0)  # no flush, no export: only the request path is measured


def _child_cmd(
    framework: str, capture: bool, request: str, n: int, rounds: int, timed: bool
) -> list[str]:
    cmd = [sys.executable, __file__, "--child", framework, "on" if capture else "off", request]
    cmd += ["--n", str(n), "--rounds", str(rounds)]
    return cmd + ([] if timed else ["--untimed"])


def cpu_us(framework: str, capture: bool, request: str, n: int, rounds: int) -> float:
    out = subprocess.run(
        _child_cmd(framework, capture, request, n, rounds, True),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["us"])


def instructions(framework: str, capture: bool, request: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}"]
            + _child_cmd(framework, capture, request, n, 1, False),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
        assert found, proc.stderr[-2000:]
        return int(found.group(1).replace(",", ""))


def per_request_instructions(framework: str, capture: bool, request: str) -> float:
    few, many = 200, 1200
    return (
        instructions(framework, capture, request, many)
        - instructions(framework, capture, request, few)
    ) / (many - few)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=3, metavar=("FRAMEWORK", "CAPTURE", "REQUEST"))
    parser.add_argument("--untimed", action="store_true")
    parser.add_argument("--frameworks", default="flask,django,fastapi")
    parser.add_argument("--requests", default="hello,json")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--dump", nargs=3, metavar=("FRAMEWORK", "CAPTURE", "REQUEST"))
    args = parser.parse_args()
    if args.dump:
        framework, capture, request = args.dump
        dump_attributes(framework, capture == "on", request)
        return
    if args.child:
        framework, capture, request = args.child
        child(framework, capture == "on", request, args.n, args.rounds, not args.untimed)
        return
    for framework in args.frameworks.split(","):
        for request in args.requests.split(","):
            off = cpu_us(framework, False, request, args.n, args.rounds)
            on = cpu_us(framework, True, request, args.n, args.rounds)
            line = (
                f"{framework:8s} {request:6s} CPU/request: off {off:6.1f} us, on {on:6.1f} us, "
                f"capture +{on - off:5.1f} us"
            )
            if args.instructions:
                i_off = per_request_instructions(framework, False, request)
                i_on = per_request_instructions(framework, True, request)
                line += f" | instr/request: off {i_off:,.0f}, on {i_on:,.0f}, +{i_on - i_off:,.0f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
