"""The lean server path in-process: no per-message spans, one server span when an app also
instruments itself with contrib, apps created before instrumentation, bad input, our own
errors, and the HYPERDX_SERVER_INSTRUMENTATION switch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from _inprocess import asgi_scope, call_asgi, instrumented, server_spans
from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
from oracle import Sink

from hyperdx.opentelemetry import options
from hyperdx.opentelemetry.server import LEAN_FRAMEWORKS, faults, lean_instrumentor, server_mode
from hyperdx.opentelemetry.server.fastapi import FastAPIInstrumentor
from hyperdx.opentelemetry.server.flask import FlaskInstrumentor
from hyperdx.opentelemetry.server.starlette import StarletteInstrumentor

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def sink() -> Sink:
    faults.reset()
    return Sink()


@pytest.fixture
def lean_flask(sink: Sink) -> Iterator[Sink]:
    with instrumented(FlaskInstrumentor, sink):
        yield sink


@pytest.fixture
def lean_fastapi(sink: Sink) -> Iterator[Sink]:
    with instrumented(FastAPIInstrumentor, sink):
        yield sink


def flask_app() -> Any:
    import flask

    app = flask.Flask("lean")

    @app.route("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return {"id": item_id}

    return app


def fastapi_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/items/{item_id}")
    async def item(item_id: int, body: dict[str, Any]) -> Any:
        return {"id": item_id, "body": body}

    return app


# --- what is (not) emitted --------------------------------------------------------------------


def test_no_per_message_asgi_spans(lean_fastapi: Sink) -> None:
    from starlette.testclient import TestClient

    reply = TestClient(fastapi_app()).post("/items/7", json={"a": 1})
    assert reply.json() == {"id": 7, "body": {"a": 1}}
    spans = lean_fastapi.span_dicts()
    assert [s["name"] for s in spans] == ["POST /items/{item_id}"]
    assert spans[0]["attributes"]["http.status_code"] == 200
    assert spans[0]["scope"] == "opentelemetry.instrumentation.fastapi"


def test_apps_created_before_instrumentation_are_traced(sink: Sink) -> None:
    from starlette.testclient import TestClient

    early_flask, early_fastapi = flask_app(), fastapi_app()  # e.g. gunicorn --preload
    FlaskInstrumentor().instrument(tracer_provider=sink.tracer_provider)
    FastAPIInstrumentor().instrument(tracer_provider=sink.tracer_provider)
    try:
        assert early_flask.test_client().get("/items/1").status_code == 200
        assert TestClient(early_fastapi).post("/items/2", json={}).status_code == 200
    finally:
        FlaskInstrumentor().uninstrument()
        FastAPIInstrumentor().uninstrument()
    names = sorted(s["name"] for s in server_spans(sink))
    assert names == ["GET /items/<int:item_id>", "POST /items/{item_id}"]


# --- exactly one server span when the app also calls contrib ------------------------------------


@pytest.mark.parametrize("when", ["before first request", "after first request"])
def test_flask_app_instrumented_by_contrib_too_has_one_server_span(
    lean_flask: Sink, when: str
) -> None:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor as ContribFlask

    app = flask_app()
    client = app.test_client()
    if when == "after first request":
        client.get("/items/0")
    ContribFlask().instrument_app(app, tracer_provider=lean_flask.tracer_provider)
    client.get("/items/1", headers={"traceparent": TRACEPARENT})
    spans = [s for s in server_spans(lean_flask) if s["attributes"]["http.target"] == "/items/1"]
    assert len(spans) == 1
    assert spans[0]["parent"] == "b7ad6b7169203331"
    assert not [s for s in lean_flask.span_dicts() if s["kind"] == "INTERNAL"]


def test_fastapi_app_instrumented_by_contrib_too_has_one_server_span(lean_fastapi: Sink) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor as ContribFastAPI
    from starlette.testclient import TestClient

    app = fastapi_app()
    ContribFastAPI.instrument_app(app, tracer_provider=lean_fastapi.tracer_provider)
    try:
        TestClient(app).post("/items/3", json={})
    finally:
        ContribFastAPI.uninstrument_app(app)
    spans = server_spans(lean_fastapi)
    assert [s["name"] for s in spans] == ["POST /items/{item_id}"]
    # contrib won here (it instrumented the app first); its own per-message spans say so
    assert any(s["name"].endswith("http send") for s in lean_fastapi.span_dicts())


def test_starlette_app_instrumented_by_contrib_too_has_one_server_span(sink: Sink) -> None:
    from opentelemetry.instrumentation.starlette import StarletteInstrumentor as Contrib
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def hello(request: Any) -> Any:
        return PlainTextResponse("hi")

    StarletteInstrumentor().instrument(tracer_provider=sink.tracer_provider)
    try:
        app = Starlette(routes=[Route("/hello", hello)])
        Contrib.instrument_app(app, tracer_provider=sink.tracer_provider)
        assert TestClient(app).get("/hello").text == "hi"
    finally:
        StarletteInstrumentor().uninstrument()
    assert [s["name"] for s in server_spans(sink)] == ["GET /hello"]


# --- bad input never reaches the app as an exception of ours ------------------------------------


def _wsgi_call(app: Any, **environ: Any) -> tuple[str, bytes]:
    import io

    base = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/items/1",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    base.update(environ)
    status: list[str] = []
    body = b"".join(app(base, lambda s, h, *a: status.append(s)))
    return status[0], body


def test_flask_bad_input_is_served_and_traced(lean_flask: Sink) -> None:
    app = flask_app()
    # a path that is not UTF-8 (PEP 3333 carries the raw bytes as latin-1), a broken
    # traceparent, a port that is not a number, an undecodable header value
    status, _ = _wsgi_call(
        app,
        PATH_INFO=b"/caf\xe9/\xff".decode("latin-1"),
        RAW_URI="/caf%E9/%FF",
        HTTP_TRACEPARENT="00-zz-broken",
        HTTP_BAGGAGE="%%%;;;=,=",
        SERVER_PORT="eighty",
        REMOTE_PORT="-",
        HTTP_USER_AGENT=b"\xff\xfe".decode("latin-1"),
    )
    assert status.startswith("404")
    status, body = _wsgi_call(app, HTTP_TRACEPARENT="00-" + "0" * 32 + "-" + "0" * 16 + "-01")
    assert status.startswith("200") and b'"id":1' in body.replace(b" ", b"")
    spans = server_spans(lean_flask)
    assert len(spans) == 2
    assert spans[0]["attributes"]["http.target"] == "/caf%E9/%FF"
    assert "net.host.port" not in spans[0]["attributes"]
    assert spans[0]["parent"] is None and spans[1]["parent"] is None  # invalid parents ignored
    assert faults.problems() == {}


def test_asgi_bad_input_is_served_and_traced(lean_fastapi: Sink) -> None:
    headers = [
        (b"host", b"example.test"),
        (b"content-type", b"application/json"),
        (b"traceparent", b"not-a-traceparent"),
        (b"user-agent", b"\xff\xfe agent"),
    ]
    scope = asgi_scope(
        "POST",
        "/items/5",
        headers,
        asgi={"version": "3.0"},
        query_string=b"q=\xff\xfe",  # not UTF-8 (contrib's decode would raise here)
        client=("127.0.0.1", 5000),
    )
    sent = call_asgi(fastapi_app(), scope, b'{"x": 1}')
    assert sent[0]["status"] == 200
    [span] = server_spans(lean_fastapi)
    assert span["name"] == "POST /items/{item_id}"
    assert span["parent"] is None
    assert span["attributes"]["http.server_name"] == "example.test"
    assert faults.problems() == {}


def test_plain_asgi_middleware_survives_malformed_header_entries(sink: Sink) -> None:
    from hyperdx.opentelemetry.server import OpenTelemetryASGIMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": [(b"x-bad",)]})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/\udcff",
        "headers": [(b"x-broken",), (b"host", b"h"), None],
        "client": None,
        "server": None,
    }
    middleware = OpenTelemetryASGIMiddleware(app, tracer_provider=sink.tracer_provider)
    asyncio.run(middleware(scope, None, send))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    [span] = server_spans(sink)
    assert span["attributes"]["http.status_code"] == 204
    assert span["attributes"]["http.host"] == "0.0.0.0"
    assert faults.problems() == {}


# --- errors inside our instrumentation: caught, counted, reported once --------------------------


class BrokenSampler(Sampler):
    """A user's sampler with a bug: span creation itself fails."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        raise RuntimeError("sampler bug")

    def get_description(self) -> str:
        return "broken"


def test_our_errors_are_caught_counted_and_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    faults.reset()
    FlaskInstrumentor().instrument(tracer_provider=TracerProvider(sampler=BrokenSampler()))
    try:
        client = flask_app().test_client()
        with caplog.at_level(logging.ERROR, logger="hyperdx.opentelemetry"):
            replies = [client.get(f"/items/{i}") for i in range(3)]
    finally:
        FlaskInstrumentor().uninstrument()
    assert [r.json for r in replies] == [{"id": 0}, {"id": 1}, {"id": 2}]
    assert faults.problems() == {"flask.start_span": 3}
    reported = [r for r in caplog.records if "server instrumentation error" in r.getMessage()]
    assert len(reported) == 1
    assert "flask.start_span" in reported[0].getMessage()
    assert "sampler bug" in reported[0].getMessage()


# --- the switch ---------------------------------------------------------------------------------


def test_server_mode_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"flask", "django", "fastapi", "starlette"} == LEAN_FRAMEWORKS
    monkeypatch.delenv("HYPERDX_SERVER_INSTRUMENTATION", raising=False)
    assert server_mode() == "lean"
    assert type(lean_instrumentor("flask")).__module__ == "hyperdx.opentelemetry.server.flask"
    assert lean_instrumentor("requests") is None
    monkeypatch.setenv("HYPERDX_SERVER_INSTRUMENTATION", "Contrib")
    assert server_mode() == "contrib"
    assert all(lean_instrumentor(name) is None for name in LEAN_FRAMEWORKS)


def test_bad_server_mode_is_a_warning_naming_variable_and_value() -> None:
    mode, warnings = options.server_instrumentation({"HYPERDX_SERVER_INSTRUMENTATION": "fast"})
    assert mode == "lean"
    assert warnings == (
        "HYPERDX_SERVER_INSTRUMENTATION='fast' is not one of lean, contrib; "
        "keeping the default lean",
    )
    settings = options.resolve(
        options.HyperDXOptions(server_instrumentation="contrib", service_name="s"), env={}
    )
    assert settings.server_instrumentation.value == "contrib"
    assert settings.server_instrumentation.source == "code"


def test_django_with_contrib_middleware_too_has_one_server_span() -> None:
    """Ours first, then contrib's DjangoInstrumentor (its middleware in MIDDLEWARE too)."""
    from test_server_parity import telemetry

    spans = telemetry("django", "both", "")["spans"]
    assert len(spans) == 6  # one per request, all SERVER, none nested
    assert {s["kind"] for s in spans} == {"SERVER"}
    assert {s["parent"] for s in spans} == {None, "b7ad6b7169203331"}


# --- propagation: skipped only when it cannot find anything ------------------------------------


class _HeaderPropagator:
    """A custom propagator: continues the trace named in ``x-trace`` (no traceparent at all)."""

    fields = {"x-trace"}

    def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        found = getter.get(carrier, "x-trace") if getter is not None else None
        if not found:
            return context
        trace_id, span_id = found[0].split(":")
        parent = SpanContext(
            int(trace_id, 16), int(span_id, 16), True, TraceFlags(TraceFlags.SAMPLED)
        )
        return trace.set_span_in_context(NonRecordingSpan(parent), context)

    def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
        return None


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
def test_propagation_honours_baggage_and_a_custom_propagator(
    sink: Sink, framework: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import baggage, propagate

    seen: list[Any] = []
    instrumentor = FlaskInstrumentor if framework == "flask" else FastAPIInstrumentor
    with instrumented(instrumentor, sink):
        if framework == "flask":
            app = flask_app()

            @app.route("/bag")
            def bag() -> Any:
                seen.append(baggage.get_baggage("tenant"))
                return "ok"

            client: Any = app.test_client()
            get = client.get
        else:
            from fastapi.testclient import TestClient

            fapp = fastapi_app()

            @fapp.get("/bag")
            async def bag() -> Any:
                seen.append(baggage.get_baggage("tenant"))
                return "ok"

            get = TestClient(fapp).get
        get("/bag", headers={"baggage": "tenant=acme"})  # default propagator, baggage only
        get("/bag")  # neither header: a new trace
        monkeypatch.setattr(propagate, "_HTTP_TEXT_FORMAT", _HeaderPropagator())
        get("/bag", headers={"x-trace": "0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331"})
    assert seen == ["acme", None, None]
    spans = [s for s in server_spans(sink) if s["name"].endswith("/bag")]
    assert [s["parent"] for s in spans] == [None, None, "b7ad6b7169203331"]
    assert spans[2]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
