"""Serve one set of requests through one framework with contrib's or our instrumentor.

Run as a subprocess (instrumentors patch classes process-wide):
``python parity_run.py <flask|django|fastapi|starlette|wsgi|asgi> <contrib|lean>``; prints the
spans and metrics as JSON (see oracle.py).
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

from oracle import Sink

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
HEADERS = {"traceparent": TRACEPARENT, "User-Agent": "curl/8", "X-Custom": "a", "X-Secret": "s"}


def flask_run(impl: str, sink: Sink) -> None:
    import flask

    if impl == "contrib":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor
    else:
        from hyperdx.opentelemetry.server.flask import FlaskInstrumentor  # type: ignore[assignment]
    app = flask.Flask("parity")

    @app.route("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return {"id": item_id}

    @app.route("/boom")
    def boom() -> Any:
        return 1 / 0

    FlaskInstrumentor.instrument_app(
        app, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider
    )
    client = app.test_client()
    client.get("/items/3?q=1", headers=HEADERS)
    client.get("/missing")
    client.get("/boom")
    client.post("/items/3", data=b"abc")
    client.open("/items/4", method="FOO")
    client.get("/items/5", headers={"traceparent": "00-broken"})


def django_run(impl: str, sink: Sink) -> None:
    """``impl`` contrib, lean, or both (ours first, then contrib's DjangoInstrumentor)."""
    import django
    from django.conf import settings

    settings.configure(
        ROOT_URLCONF="parity_django_urls",
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        DEBUG=False,
    )
    django.setup()
    from opentelemetry.instrumentation.django import DjangoInstrumentor as Contrib

    from hyperdx.opentelemetry.server.django import DjangoInstrumentor as Lean

    providers = {"tracer_provider": sink.tracer_provider, "meter_provider": sink.meter_provider}
    if impl in ("lean", "both"):
        Lean().instrument(**providers)
    if impl in ("contrib", "both"):
        Contrib().instrument(**providers)
    from django.test import Client

    client = Client(raise_request_exception=False)
    extra = {"HTTP_TRACEPARENT": TRACEPARENT, "HTTP_USER_AGENT": "curl/8", "HTTP_X_CUSTOM": "a"}
    client.get("/items/3/?q=1", **extra)  # type: ignore[arg-type]
    client.get("/missing/")
    client.get("/boom/")
    client.post("/items/3/", data=b"abc", content_type="text/plain")
    client.generic("FOO", "/items/4/")
    client.get("/items/5")  # CommonMiddleware redirects to the slash URL


def _asgi_requests(app: Any) -> None:
    from starlette.testclient import TestClient

    client = TestClient(app, raise_server_exceptions=False)
    client.get("/items/3?q=1", headers=HEADERS)
    client.get("/missing")
    client.get("/boom")
    client.post("/items/3", content=b"abc")
    client.request("FOO", "/items/4")
    client.get("/items/5", headers={"traceparent": "00-broken"})


def fastapi_run(impl: str, sink: Sink) -> None:
    from fastapi import BackgroundTasks, FastAPI, HTTPException

    if impl == "contrib":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    else:
        from hyperdx.opentelemetry.server.fastapi import (  # type: ignore[assignment]
            FastAPIInstrumentor,
        )
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int, tasks: BackgroundTasks) -> Any:
        tasks.add_task(print, end="")
        return {"id": item_id}

    @app.get("/boom")
    def boom() -> Any:
        return 1 / 0

    @app.get("/forbidden")
    def forbidden() -> Any:
        raise HTTPException(403)

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider
    )
    _asgi_requests(app)


def starlette_run(impl: str, sink: Sink) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    if impl == "contrib":
        from opentelemetry.instrumentation.starlette import StarletteInstrumentor
    else:
        from hyperdx.opentelemetry.server.starlette import (  # type: ignore[assignment]
            StarletteInstrumentor,
        )

    async def item(request: Any) -> Any:
        return PlainTextResponse("item " + request.path_params["item_id"])

    async def boom(request: Any) -> Any:
        return 1 / 0

    app = Starlette(routes=[Route("/items/{item_id}", item), Route("/boom", boom)])
    StarletteInstrumentor.instrument_app(
        app, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider
    )
    _asgi_requests(app)


def wsgi_run(impl: str, sink: Sink) -> None:
    from werkzeug.test import Client

    if impl == "contrib":
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
    else:
        from hyperdx.opentelemetry.server import (
            OpenTelemetryWSGIMiddleware as OpenTelemetryMiddleware,
        )

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/boom":
            raise ValueError("boom")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = Client(
        OpenTelemetryMiddleware(
            app, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider
        )
    )
    client.get("/items/3?q=1", headers=HEADERS)
    with contextlib.suppress(ValueError):  # contrib and we both re-raise the app's error
        client.get("/boom")
    client.open("/items/4", method="FOO")


def asgi_run(impl: str, sink: Sink) -> None:
    from starlette.testclient import TestClient

    if impl == "contrib":
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    else:
        from hyperdx.opentelemetry.server import (
            OpenTelemetryASGIMiddleware as OpenTelemetryMiddleware,
        )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/boom":
            raise ValueError("boom")
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    client = TestClient(
        OpenTelemetryMiddleware(
            app, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider
        ),
        raise_server_exceptions=False,
    )
    client.get("/items/3?q=1", headers=HEADERS)
    client.get("/boom")
    client.request("FOO", "/items/4")


def main() -> None:
    framework, impl = sys.argv[1], sys.argv[2]
    sink = Sink()
    globals()[f"{framework}_run"](impl, sink)
    spans = sink.span_dicts()
    if impl == "contrib":  # the per-message spans we deliberately do not emit
        spans = [s for s in spans if not s["name"].endswith((" send", " receive"))]
    print(json.dumps({"spans": spans, "metrics": sink.metric_dicts()}, default=str))


if __name__ == "__main__":
    main()
