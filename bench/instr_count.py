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
    .venv/bin/python bench/instr_count.py --parts copy,environ_attrs,metrics  # per piece
    .venv/bin/python bench/instr_count.py --profile 5000 --variants lean  # cProfile shares

``--parts`` counts one piece of the lean Flask path at a time (see :func:`parts`; subtract
``copy``, the environ copy each piece makes); run it with ``PYTHONPATH=<other>/src`` to count
another tree's code.
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
    if framework == "part":
        func = parts()[variant]
        for _ in range(200):
            func()
        for _ in range(n):
            func()
        sys.stdout.flush()
        os._exit(0)
    os.environ.update(QUIET_EXPORT)
    run = _flask(variant) if framework == "flask" else _fastapi(variant)
    run(200)  # warm-up: per-app state, caches, the middleware stack
    run(n)
    sys.stdout.flush()
    os._exit(0)  # no flush, no export: only the request path is counted


def _environ(**extra: Any) -> dict[str, Any]:
    return {
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
        **HEADERS,
        **extra,
    }


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def parts() -> dict[str, Any]:
    """One callable per piece of the lean Flask request path, on a warmed-up instrumented app
    (``--parts``: instructions per call of each, the ``copy`` baseline subtracted)."""
    from opentelemetry import trace

    from hyperdx.opentelemetry import fast_context, fast_span
    from hyperdx.opentelemetry.server import semconv, wsgi

    os.environ.update(QUIET_EXPORT)
    import flask

    app = flask.Flask("bench")

    @app.route("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return "ok"

    tp, mp = _providers("lean")
    from hyperdx.opentelemetry.server.flask import FlaskInstrumentor as Lean

    Lean.instrument_app(app, tracer_provider=tp, meter_provider=mp)
    wsgi_runner(app)(200)
    state = app.__dict__["_hyperdx_server"]
    t, mode = state.telemetry, state.mode
    template = _environ()
    with_parent = _environ(HTTP_TRACEPARENT=TRACEPARENT)
    attrs, active, plain = wsgi.request_start_plain(dict(template), mode)[:3]
    rule = next(r for r in app.url_map.iter_rules() if r.rule.startswith("/items"))
    info = state.route(rule)
    span0 = t.tracer.start_span("x")
    ctx0 = trace.set_span_in_context(span0)

    def copy() -> None:
        dict(template)

    def environ_attrs() -> None:
        wsgi.request_start_plain(dict(template), mode)

    def active_pm() -> None:
        dict(template)
        cell = t.active.cell_of(active)
        if hasattr(cell, "pop"):  # this tree's cells (what the Flask path does)
            cell.append(None)
            cell.pop()
        else:  # the older tree's
            t.active.add_to(cell, 1)
            t.active.add_to(cell, -1)

    def sdk_span() -> None:  # fast_span alone (the span side): start and end
        dict(template)
        fast_span.start_span(
            t.tracer,
            "GET /items/<int:item_id>",
            None,
            trace.SpanKind.SERVER,
            dict(attrs),
            None,
            plain=True,
        ).end()

    def server_span(env: dict[str, Any] = template) -> None:  # our wrapper + fast_span
        e = dict(env)
        span, ctx = wsgi.start_server_span(
            t.tracer,
            "GET /items/<int:item_id>",
            e,
            wsgi.environ_getter,
            dict(attrs),
            None,
            ("k", {}),
            plain=True,
        )
        span.end()

    def server_span_traceparent() -> None:
        server_span(with_parent)

    def attach_detach() -> None:
        dict(template)
        fast_context.detach(fast_context.attach(ctx0))

    def status() -> None:
        dict(template)
        a = dict(attrs)
        semconv.set_status(trace.INVALID_SPAN, a, 200, "200", mode)

    def metrics() -> None:
        dict(template)
        a = dict(attrs)
        a["http.status_code"] = 200
        if hasattr(t, "record_wsgi"):  # this tree's entry point, else the older tree's
            t.record_wsgi(0.0004, a, info, ctx0, True)
        else:
            t.record(
                0.0004,
                a,
                span0,
                info.old_extra,
                info.new_extra,
                ctx0,
                wsgi_order=True,
                str_int=True,
            )

    def request() -> None:
        wsgi_runner(app)(1)

    named = (copy, environ_attrs, active_pm, sdk_span, server_span, server_span_traceparent)
    return {f.__name__: f for f in (*named, attach_detach, status, metrics, request)}


def profile(framework: str, variant: str, n: int, top: int) -> None:
    """Per-function cost of ``n`` requests under cProfile (call counts exact, times inflated
    by the profiler's own per-call cost, so read them as shares), grouped by package."""
    import cProfile
    import pstats

    os.environ.update(QUIET_EXPORT)
    run = _flask(variant) if framework == "flask" else _fastapi(variant)
    run(200)
    prof = cProfile.Profile()
    prof.enable()
    run(n)
    prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    groups: dict[str, float] = {}
    for (path, line, func), (_cc, calls, tottime, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        group = _group(path)
        groups[group] = groups.get(group, 0.0) + tottime
        rows.append((tottime, calls, f"{group}:{os.path.basename(path)}:{line}:{func}"))
    total = sum(groups.values())
    print(f"# {n} requests, total profiled {total / n * 1e6:.1f} us/request (inflated)")
    for group, seconds in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"{group:>24} {seconds / total:6.1%}")
    print("# per function: share of total, calls per request, name")
    for tottime, calls, name in sorted(rows, reverse=True)[:top]:
        print(f"{tottime / total:6.1%} {calls / n:5.1f} {name}")


def _group(path: str) -> str:
    for part in ("hyperdx/opentelemetry", "opentelemetry/sdk", "opentelemetry", "werkzeug"):
        if part in path:
            rest = path.split(part, 1)[1].strip("/").split("/")
            return part.split("/")[-1] + ("/" + rest[0] if len(rest) > 1 else "")
    if "flask" in path:
        return "flask"
    return "builtins" if path == "~" else "other"


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
    parser.add_argument(
        "--profile", type=int, default=0, help="cProfile N requests in process (no valgrind)"
    )
    parser.add_argument("--parts", default="", help="comma list, e.g. copy,environ_attrs")
    args = parser.parse_args()
    if args.parts:
        few, many = args.few, args.many
        per = {}
        for name in args.parts.split(","):
            a = instructions("part", name, few)
            b = instructions("part", name, many)
            per[name] = (b - a) / (many - few)
            base = per.get("copy", 0.0)
            row = {
                "part": name,
                "instr_per_call": round(per[name]),
                "minus_copy": round(per[name] - base),
            }
            print(json.dumps(row), flush=True)
        return
    if args.profile:
        for framework in args.frameworks.split(","):
            for variant in args.variants.split(","):
                print(f"## {framework} {variant}")
                profile(framework, variant, args.profile, 45)
        return
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
