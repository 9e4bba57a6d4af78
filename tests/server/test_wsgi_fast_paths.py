"""The WSGI/Flask per-request shortcuts give what the general code gives: memoized attribute
heads are copied (never shared) and bounded, the key-by-key active key and duration
attributes come out in the order a full scan gives, the one-copy span context equals
``set_span_in_context`` plus ``set_value``, and the Flask per-rule memos (span name, sqlcommenter
tags) neither leak between requests nor hide a custom ``Request.endpoint``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from _inprocess import (
    MODE_IDS,
    MODES,
    active_requests,
    instrumented,
    metric_points,
    server_spans,
)
from opentelemetry import context, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import INVALID_SPAN
from oracle import Sink

from hyperdx.opentelemetry.server import faults, semconv, telemetry, wsgi
from hyperdx.opentelemetry.server.flask import FlaskInstrumentor

BASE = {
    "REQUEST_METHOD": "GET",
    "PATH_INFO": "/items/7",
    "QUERY_STRING": "a=1",
    "RAW_URI": "/items/7?a=1",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_PORT": "50000",
    "wsgi.url_scheme": "http",
    "HTTP_HOST": "127.0.0.1:8000",
    "HTTP_USER_AGENT": "bench/1.0",
}
VARIANTS: list[dict[str, Any]] = [
    {},
    {"REQUEST_METHOD": "brew "},
    {"REQUEST_METHOD": None},
    {"RAW_URI": None, "REQUEST_URI": "/x"},
    {"RAW_URI": None},
    {"REMOTE_HOST": "h"},
    {"SERVER_PROTOCOL": "HTTP/2"},
    {"SERVER_PROTOCOL": "SPDY"},
    {"SERVER_PROTOCOL": None},
    {"HTTP_USER_AGENT": "Googlebot/2.1"},
    {"HTTP_USER_AGENT": b"bytes-agent"},
    {"SERVER_PORT": "x", "REMOTE_PORT": "y"},
    {"HTTP_HOST": None, "SERVER_NAME": None},
    {"SERVER_PORT": ["unhashable"]},
]
STATUSES = ["200 OK", "404 NOT FOUND", "500 ERR", "abc x", "99 low"]


def _environ(variant: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in {**BASE, **variant}.items() if v is not None}


def _scanned(attrs: dict[str, Any], keys: frozenset[str] | set[str]) -> list[tuple[str, Any]]:
    """The general rule: every attribute scanned, in the attributes' own order."""
    return [(k, v) for k, v in attrs.items() if k in keys]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_attributes_active_key_and_duration_picks_match_a_full_scan(mode: semconv.Mode) -> None:
    active_keys = (semconv.ACTIVE_OLD if mode.old else set()) | (
        semconv.ACTIVE_NEW if mode.new else set()
    )
    checked = 0
    for variant, status in itertools.product(VARIANTS, STATUSES):
        environ = _environ(variant)
        first, key = wsgi.request_start(environ, mode)
        second, key_again = wsgi.request_start(environ, mode)
        assert list(first.items()) == list(second.items())
        assert first is not second
        first["mutated"] = True  # a copy: the next request does not see it
        assert "mutated" not in wsgi.request_attributes(environ, mode)
        del first["mutated"]
        assert list(key) == _scanned(first, active_keys)
        assert key == key_again
        code, text = semconv.wsgi_status(status)
        assert (code, text) == semconv.status_code_of(status.split(" ", 1)[0])
        semconv.set_status(INVALID_SPAN, first, code, text, mode)
        for order, keys in (
            (semconv.WSGI_DURATION_OLD_ORDER, semconv.DURATION_OLD),
            (semconv.WSGI_DURATION_NEW_ORDER, semconv.DURATION_NEW),
        ):
            assert list(semconv.pick_in_order(first, order).items()) == _scanned(first, keys)
        checked += 1
    assert checked == len(VARIANTS) * len(STATUSES)


def test_head_memo_is_bounded_and_skips_unhashable_values() -> None:
    mode = MODES[0]
    wsgi._HEADS.clear()
    for i in range(wsgi._MAX_HEADS + 50):
        attrs = wsgi.request_attributes(_environ({"HTTP_HOST": f"h{i}:80"}), mode)
        assert attrs["http.host"] == f"h{i}:80"
    memo = wsgi._HEADS
    assert len(memo) == wsgi._MAX_HEADS
    attrs = wsgi.request_attributes(_environ({"SERVER_PORT": ["x"]}), mode)
    assert "net.host.port" not in attrs and attrs["http.method"] == "GET"
    assert len(memo) == wsgi._MAX_HEADS
    wsgi._HEADS.clear()


def test_an_unhashable_host_reaches_the_app_as_served_not_as_our_error() -> None:
    """A list as ``HTTP_HOST`` (no PEP 3333 server sends one, a test client can): the app
    answers, the span is exported, and the request is counted as active under the overflow
    attribute set (its own set is unhashable)."""
    faults.reset()
    sink = Sink()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"served"]

    middleware = wsgi.OpenTelemetryWSGIMiddleware(
        app, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider
    )
    environ = _environ({"HTTP_HOST": ["odd", "host"], "PATH_INFO": "/odd"})
    statuses: list[str] = []
    body = b"".join(middleware(environ, lambda status, headers, *a: statuses.append(status)))
    assert (body, statuses) == (b"served", ["200 OK"])
    spans = sink.span_dicts()
    assert [(s["name"], s["attributes"]["http.status_code"]) for s in spans] == [("GET /odd", 200)]
    active = sink.metric_dicts()["http.server.active_requests"][2]
    assert active == [([("otel.metric.overflow", True)], 0)]  # counted, +1 and -1 paired
    assert "wsgi.active" not in faults.problems()
    faults.reset()


def test_status_line_memo_is_bounded() -> None:
    for i in range(semconv._MAX_STATUS_LINES + 20):
        assert semconv.wsgi_status(f"{200 + i % 300} X{i}") == (200 + i % 300, str(200 + i % 300))
    assert len(semconv.STATUS_LINES) <= semconv._MAX_STATUS_LINES


@pytest.mark.parametrize("extra", [None, ("SQLCOMMENTER_ORM_TAGS_AND_VALUES", {"a": 1})])
def test_one_copy_context_is_set_span_in_context(extra: Any) -> None:
    sink = Sink()
    tracer = sink.tracer_provider.get_tracer("t")
    for environ, active in itertools.product(
        [{}, {"HTTP_TRACEPARENT": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}],
        [False, True],
    ):
        token = None
        if active:  # under an active span: INTERNAL, the current context as the parent
            outer = tracer.start_span("outer")
            token = context.attach(trace.set_span_in_context(outer))
        try:
            span, ctx = wsgi.start_server_span(
                tracer, "GET /x", environ, wsgi.environ_getter, {"a": "b"}, extra=extra
            )
            parent = context.get_current() if active else wsgi.extract(environ)
            expected = trace.set_span_in_context(span, parent)
            if extra is not None:
                expected = context.set_value(extra[0], extra[1], expected)
            assert dict(ctx) == dict(expected)
            assert list(ctx) == list(expected)
            kind = trace.SpanKind.INTERNAL if active else trace.SpanKind.SERVER
            assert span.kind is kind  # type: ignore[attr-defined]
        finally:
            if token is not None:
                context.detach(token)


@pytest.fixture
def lean_flask() -> Iterator[Sink]:
    faults.reset()
    with instrumented(FlaskInstrumentor, Sink()) as sink:
        yield sink


def test_flask_commenter_tags_are_fresh_per_request_and_follow_a_custom_endpoint(
    lean_flask: Sink,
) -> None:
    import flask

    seen: list[dict[str, Any]] = []

    class Renamed(flask.Request):
        @property
        def endpoint(self) -> str | None:
            return "renamed"

    app = flask.Flask("fast")

    @app.route("/items/<int:item_id>", methods=["GET", "BREW"])
    def item(item_id: int) -> Any:
        tags = context.get_value("SQLCOMMENTER_ORM_TAGS_AND_VALUES")
        assert isinstance(tags, dict)
        seen.append(dict(tags))
        tags["mutated"] = True  # the app's own change must not reach the next request
        return "ok"

    client = app.test_client()
    for _ in range(3):
        assert client.get("/items/1").status_code == 200
    app.request_class = Renamed
    assert client.get("/items/2").status_code == 200
    assert client.open("/items/3", method="BREW").status_code == 200
    route = {"framework": seen[0]["framework"], "route": "/items/<int:item_id>"}
    assert seen[:3] == [{**route, "controller": "item"}] * 3
    assert seen[3:] == [{**route, "controller": "renamed"}] * 2
    names = [s["name"] for s in server_spans(lean_flask)]
    assert names == ["GET /items/<int:item_id>"] * 4 + ["HTTP /items/<int:item_id>"]
    assert faults.problems() == {}


def test_active_requests_count_per_key_and_overflow_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    active, sink = active_requests(monkeypatch, 3)
    keys = [(("http.method", m),) for m in ("GET", "POST", "PUT", "PATCH", "DELETE")]
    for key in keys:  # the last two are past the limit: both counted as the overflow set
        active.add(1, key)
        active.add(1, key)
    active.add(-1, keys[0])
    active.add(-1, tuple(keys[4]))  # an equal key, not the same object
    assert metric_points(sink, "http.server.active_requests") == {
        (("http.method", "GET"),): 1,
        (("http.method", "POST"),): 2,
        (("http.method", "PUT"),): 2,
        (("otel.metric.overflow", True),): 3,
    }


def test_active_requests_counts_an_unhashable_key_under_the_overflow_set() -> None:
    sink = Sink()
    meter = sink.meter_provider.get_meter("t")
    active = telemetry.ActiveRequests(meter, "{request}", "d")
    odd = (("http.host", ["odd"]),)
    overflow = active.cell(telemetry._OVERFLOW)
    assert active.cell(odd) is overflow and active.cell_of(odd) is overflow
    active.add(1, odd)
    active.add_to(active.cell_of(odd), 1)
    active.add(1, (("http.method", "GET"),))
    points = sink.metric_dicts()["http.server.active_requests"][2]
    assert points == [([("http.method", "GET")], 1), ([("otel.metric.overflow", True)], 2)]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_request_attributes_are_contribs_for_every_environ_variant(mode: semconv.Mode) -> None:
    """The memoised head plus the per-request values read in C (``request_start_plain``) give
    what contrib's ``collect_request_attributes`` gives, also for environs missing a PEP 3333
    key and odd values. (Contrib raises on a non-numeric
    server port, where we leave the port out; its ``None`` server name the SDK drops.)"""
    from opentelemetry.instrumentation._semconv import _StabilityMode
    from opentelemetry.instrumentation.wsgi import collect_request_attributes

    stability = (
        _StabilityMode.HTTP_DUP
        if mode.old and mode.new
        else _StabilityMode.HTTP
        if mode.new
        else _StabilityMode.DEFAULT
    )
    compared = 0
    for variant in [*VARIANTS, {"HTTP_HOST": None}, {"REMOTE_PORT": None, "REMOTE_ADDR": None}]:
        environ = _environ(variant)
        try:
            expected = collect_request_attributes(dict(environ), stability)
        except (TypeError, ValueError):
            continue
        expected = {k: v for k, v in expected.items() if v is not None}
        for _ in range(2):  # the first request fills the head memo, the second reads it
            assert wsgi.request_attributes(environ, mode) == expected, variant
        compared += 1
    assert compared == len(VARIANTS) + 2 - 2


TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENTS = [
    f"00-{TRACE}-b7ad6b7169203331-01",
    f"00-{TRACE}-b7ad6b7169203331-00",
    f"00-{TRACE}-b7ad6b7169203331-ff",
    f" \t00-{TRACE}-b7ad6b7169203331-01 \t",
    f"01-{TRACE}-b7ad6b7169203331-01-future-fields",
    f"00-{TRACE}-b7ad6b7169203331-01-extra",  # version 00 with more fields: invalid
    f"ff-{TRACE}-b7ad6b7169203331-01",  # version ff: invalid
    f"00-{'0' * 32}-b7ad6b7169203331-01",  # zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # zero span id
    f"00-{TRACE.upper()}-b7ad6b7169203331-01",  # upper-case hex: invalid
    f"00-{TRACE}-b7ad6b716920333-01",  # short span id
    "00-broken",
    "",
]


def _parent_of(ctx: context.Context) -> Any:
    """The parent span context a server span would get from ``ctx`` (None: a new trace)."""
    span_context = trace.get_current_span(ctx).get_span_context()
    return span_context if span_context.is_valid else None


@pytest.mark.parametrize("header", TRACEPARENTS)
def test_traceparent_fast_path_extracts_what_the_default_propagator_does(header: str) -> None:
    """A request whose only propagation header is ``traceparent`` skips the composite
    propagator (``wsgi._traceparent_context``): same context as ``propagate.extract``."""
    environ = {"HTTP_TRACEPARENT": header}
    expected = wsgi.extract(environ, getter=wsgi.environ_getter)
    got = wsgi._traceparent_context(header)
    assert len(got) == len(expected)
    assert _parent_of(got) == _parent_of(expected)  # SpanContext: every field compared
    if len(expected):
        assert trace.get_current_span(got).get_span_context().is_remote


@pytest.mark.parametrize("header", TRACEPARENTS[:5])
@pytest.mark.parametrize(
    "more",
    [{}, {"HTTP_TRACESTATE": "vendor=x,other=y"}, {"HTTP_BAGGAGE": "user=ann"}],
    ids=["alone", "tracestate", "baggage"],
)
def test_server_span_parent_is_the_extracted_one(header: str, more: dict[str, str]) -> None:
    """Through ``start_server_span``: the span's parent (with its trace state) and the
    baggage in the attached context are what ``propagate.extract`` gives, whichever path
    (the fast one only without ``tracestate`` and ``baggage``) was taken."""
    from opentelemetry import baggage

    sink = Sink()
    tracer = sink.tracer_provider.get_tracer("t")
    environ = {"HTTP_TRACEPARENT": header, **more}
    expected = wsgi.extract(environ, getter=wsgi.environ_getter)
    span, ctx = wsgi.start_server_span(tracer, "GET /x", environ, wsgi.environ_getter, {})
    span.end()
    parent = _parent_of(expected)
    own = span.get_span_context()
    if isinstance(span, ReadableSpan):  # sampled: the SDK span, with its parent
        assert span.parent == parent  # type: ignore[attr-defined]
    if parent is not None:  # a sampled-out parent gives a non-recording child: same trace
        assert (own.trace_id, own.trace_state) == (parent.trace_id, parent.trace_state)
        assert own.trace_flags.sampled == parent.trace_flags.sampled
    else:
        assert own.trace_id != int(TRACE, 16)
    assert baggage.get_all(ctx) == baggage.get_all(expected)
