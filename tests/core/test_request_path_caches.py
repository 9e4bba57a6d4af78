"""The request path's caches and shortcuts give what the uncached path gives: memoised duration
attribute sets (``ServerTelemetry.record_wsgi``, ``FastHistogram.record_known``), hygiene's
one-pass fix of fast spans, inlined span ids and the direct context calls."""

from __future__ import annotations

import io
import logging
import random
import sys
from collections import Counter
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from hyperdx.opentelemetry import fast_context, fast_span, metrics_fast


def _meter_provider(adopt: bool = True) -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter())
    if adopt:
        metrics_fast.adopt(provider)
    return provider, reader


def _points(reader: InMemoryMetricReader, name: str) -> dict[frozenset[Any], tuple[int, float]]:
    """{attribute items: (count, sum)} of the histogram ``name``."""
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[frozenset[Any], tuple[int, float]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        items = frozenset((k, (type(v), v)) for k, v in point.attributes.items())
                        found[items] = (point.count, point.sum)
    return found


def test_record_known_gives_the_sdks_points_per_dict() -> None:
    """Each memoised dict lands in its own series, equal-content dicts share one, and a bool is
    not an int: exactly the points the SDK's own histogram exports for the same records."""
    a, b, a_again, flag = (
        {"k": "a", "n": 1},
        {"k": "b", "n": 1},
        {"k": "a", "n": 1},
        {"k": "a", "n": True},
    )
    records = [(3, a), (5, b), (7, a), (11, a_again), (13, flag), (17, b), (19, a)]

    def run(fast: bool) -> dict[frozenset[Any], tuple[int, float]]:
        provider, reader = _meter_provider(adopt=fast)
        histogram = metrics_fast.histogram(provider.get_meter("t").create_histogram("h"))
        assert isinstance(histogram, metrics_fast.FastHistogram) is fast
        record = metrics_fast.record_known_of(histogram)
        for amount, attrs in records:
            record(amount, attrs)
        if fast:
            assert len(histogram._known) == 4  # one entry per dict object, not per content
        return _points(reader, "h")

    fast, sdk = run(True), run(False)
    assert fast == sdk
    assert fast[frozenset({("k", (str, "a")), ("n", (int, 1))})] == (4, 3 + 7 + 11 + 19)
    assert fast[frozenset({("k", (str, "b")), ("n", (int, 1))})] == (2, 5 + 17)
    assert fast[frozenset({("k", (str, "a")), ("n", (bool, True))})] == (1, 13)


def _flask_app(meter_provider: MeterProvider, tracer_provider: TracerProvider) -> Any:
    flask = pytest.importorskip("flask")
    from hyperdx.opentelemetry.server.flask import FlaskInstrumentor

    app = flask.Flask("caches")

    @app.route("/items/<int:item_id>", methods=["GET", "POST"])
    def item(item_id: int) -> Any:
        return "ok"

    @app.route("/boom")
    def boom() -> Any:
        raise RuntimeError("boom")

    @app.route("/teapot")
    def teapot() -> Any:
        return "short and stout", 418

    FlaskInstrumentor.instrument_app(
        app, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    return app


def _call(app: Any, method: str, path: str, host: str = "127.0.0.1:8000", **extra: Any) -> str:
    status: list[str] = []
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "RAW_URI": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "HTTP_HOST": host,
        **extra,
    }
    for _ in app(environ, lambda s, h, *a: status.append(s)):
        pass
    return status[0]


def test_flask_duration_points_keep_method_status_route_and_host_apart() -> None:
    """Requests differing only in method, status, route or host header each count in their
    own series, however they interleave (a memo keyed too coarsely would merge them)."""
    meter_provider, reader = _meter_provider()
    tracer_provider = TracerProvider()
    app = _flask_app(meter_provider, tracer_provider)
    calls = [
        ("GET", "/items/1", "127.0.0.1:8000"),
        ("POST", "/items/2", "127.0.0.1:8000"),
        ("GET", "/missing", "127.0.0.1:8000"),
        ("GET", "/boom", "127.0.0.1:8000"),
        ("GET", "/teapot", "127.0.0.1:8000"),
        ("GET", "/items/3", "other:9"),
    ]
    expected: Counter[tuple[str, int, str | None, str]] = Counter()
    statuses = {"/missing": 404, "/boom": 500, "/teapot": 418}
    routes = {"/items": "/items/<int:item_id>", "/boom": "/boom", "/teapot": "/teapot"}
    for round_ in range(3):
        for method, path, host in calls[round_:] + calls[:round_]:  # another order each round
            line = _call(app, method, path, host)
            status = statuses.get(path, 200)
            assert line.startswith(str(status))
            route = next((r for p, r in routes.items() if path.startswith(p)), None)
            expected[(method, status, route, host)] += 1
    state = app.__dict__["_hyperdx_server"]
    assert isinstance(state.telemetry.duration_old, metrics_fast.FastHistogram)
    assert len(state.telemetry._wsgi_picked) == len(expected)  # the memo was used
    got: Counter[tuple[str, int, str | None, str]] = Counter()
    for items, (count, _) in _points(reader, "http.server.duration").items():
        attrs = {k: v for k, (_, v) in items}
        assert attrs["http.scheme"] == "http" and attrs["net.host.port"] == 8000
        got[
            (
                attrs["http.method"],
                attrs["http.status_code"],
                attrs.get("http.target"),
                attrs["http.host"],
            )
        ] += count
    assert got == expected


def test_wsgi_duration_memo_keeps_equal_values_of_other_types_apart() -> None:
    """1, True and 1.0 are equal and hash alike: attribute sets differing only so are three
    series (as the SDK keeps them) unless the caller vouches str/int values only."""
    from hyperdx.opentelemetry.server.telemetry import ServerTelemetry

    meter_provider, reader = _meter_provider()
    t = ServerTelemetry("caches-test", "wsgi", TracerProvider(), meter_provider)
    base = {"http.method": "GET", "http.scheme": "http", "http.flavor": "1.1"}
    for value in (1, True, 1.0, 1, True, 1.0, 1):
        t.record_wsgi(0.001, {**base, "http.status_code": value}, None, None)
    got = {
        (type(v), v): count
        for items, (count, _) in _points(reader, "http.server.duration").items()
        for k, (_, v) in items
        if k == "http.status_code"
    }
    assert got == {(int, 1): 3, (bool, True): 2, (float, 1.0): 2}


def _hygiene_spans(steps: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    """Fast spans (``fast_span.start_span``) with these start and later attributes, through the
    hygiene processor: their exported attributes."""
    from hyperdx.opentelemetry.capture.redact import get_redactor
    from hyperdx.opentelemetry.hygiene import SpanHygieneProcessor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SpanHygieneProcessor(get_redactor(True, ())))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for start, later in steps:
        span: Any = fast_span.start_span(
            tracer, "GET", otel_context.Context(), SpanKind.SERVER, start
        )
        assert type(span) is fast_span._Span
        for key, value in later.items():
            span.set_attribute(key, value)
        span.end()
    return [dict(s.attributes or {}) for s in exporter.get_finished_spans()]


def test_hygiene_on_fast_spans_builds_and_redacts_each_url() -> None:
    base = {"http.scheme": "http", "http.host": "h", "net.host.port": 8000}
    plain, secret, other_host, late, port80 = _hygiene_spans(
        [
            ({**base, "http.target": "/a"}, {}),
            ({**base, "http.target": "/a?token=s3cr3t&page=2"}, {}),
            ({**base, "http.host": "other", "http.target": "/a"}, {}),
            ({**base, "http.target": "/a"}, {"http.target": "/b?password=p"}),
            ({**base, "net.host.port": 80, "http.target": "/a"}, {}),
        ]
    )
    assert plain["http.url"] == "http://h:8000/a"
    assert secret["http.url"] == "http://h:8000/a?token=[REDACTED]&page=2"
    assert secret["http.target"] == "/a?token=[REDACTED]&page=2"
    assert other_host["http.url"] == "http://other:8000/a"
    assert late["http.target"] == "/b?password=[REDACTED]"  # changed after start: redone
    assert port80["http.url"] == "http://h/a"
    assert "s3cr3t" not in repr([plain, secret, other_host, late, port80])


def test_span_ids_come_from_random_getrandbits_read_per_call(monkeypatch: Any) -> None:
    """The inlined RandomIdGenerator draws from ``random.getrandbits`` as the SDK does (a
    patched one is used): a root span's two ids in one 192-bit draw (trace id the low 128
    bits), and a zero id falls back to the SDK's loop, never a zero id."""
    asked: list[int] = []
    draws = iter([0, 0xABC, 0x123, (0x456 << 128) | 0x789])

    def getrandbits(bits: int) -> int:
        asked.append(bits)
        return next(draws)

    monkeypatch.setattr(random, "getrandbits", getrandbits)
    tracer = TracerProvider().get_tracer("t")
    span: Any = fast_span.start_span(tracer, "s", otel_context.Context(), SpanKind.SERVER, {})
    ctx = span.get_span_context()
    # Both ids zero: the trace id drawn again by the SDK's generator, the span id as inlined.
    assert (ctx.trace_id, ctx.span_id, asked) == (0xABC, 0x123, [192, 128, 64])
    assert ctx.trace_flags.sampled and ctx.is_valid
    span = fast_span.start_span(tracer, "s", otel_context.Context(), SpanKind.SERVER, {})
    ctx = span.get_span_context()
    assert (ctx.trace_id, ctx.span_id, asked[3:]) == (0x789, 0x456, [192])


@pytest.mark.parametrize("sampler", [None, "always_on", "ratio"])
def test_span_ids_are_the_sdks_for_the_same_random_state(sampler: str | None) -> None:
    """From the same ``random`` state, fast_span's root span gets the very ids the SDK's
    ``Tracer.start_span`` gives (the one-draw path for the stock samplers, two draws else)."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    chosen = {None: None, "always_on": ALWAYS_ON, "ratio": ParentBased(TraceIdRatioBased(0.99))}
    tracer = TracerProvider(sampler=chosen[sampler]).get_tracer("t")
    for seed in range(20):
        random.seed(seed)
        sdk = tracer.start_span("s", otel_context.Context(), SpanKind.SERVER)
        after_sdk = random.getrandbits(32)
        random.seed(seed)
        fast = fast_span.start_span(tracer, "s", otel_context.Context(), SpanKind.SERVER, {})
        assert fast.get_span_context() == sdk.get_span_context()
        assert random.getrandbits(32) == after_sdk  # the same state left behind


def test_fast_context_matches_the_api_and_logs_a_bad_detach(caplog: Any) -> None:
    key = otel_context.create_key("caches-test")
    outer = otel_context.get_current()
    token = fast_context.attach(otel_context.set_value(key, 1))
    assert otel_context.get_value(key) == 1
    assert fast_context.get_current() is otel_context.get_current()
    fast_context.detach(token)
    assert otel_context.get_current() is outer
    with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
        fast_context.detach(token)  # used twice: the API logs it, nothing is raised
    assert "Failed to detach context" in caplog.text


@pytest.mark.parametrize(
    ("field", "key"),
    [("REMOTE_HOST", "net.peer.name"), ("RAW_URI", "http.target")],
)
def test_a_non_str_environ_value_still_gets_the_sdks_cleaning(field: str, key: str) -> None:
    """``request_start_plain`` vouches for plain values only: a list in a (non-PEP 3333)
    environ reaches the span through the SDK's cleaning (made a tuple), as without the
    shortcut (which would have stored the list as it is)."""
    from hyperdx.opentelemetry.server import semconv, wsgi

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    middleware = wsgi.OpenTelemetryWSGIMiddleware(app, tracer_provider=provider)
    values = {"REMOTE_HOST": "peer", "RAW_URI": "/p", "HTTP_HOST": "h:1"}
    for raw in (False, True):
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/p",
            "SERVER_NAME": "s",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.1",
            "HTTP_USER_AGENT": "agent/1",
            "wsgi.url_scheme": "http",
            **values,
        }
        if raw:
            environ[field] = [environ[field]]
        plain = wsgi.request_start_plain(environ, semconv.current_mode())[2]
        assert plain is not raw
        assert b"".join(middleware(environ, lambda *a: None)) == b"ok"
    clean, cleaned = (dict(s.attributes or {}) for s in exporter.get_finished_spans())
    assert cleaned.pop(key) == (clean.pop(key),)  # the SDK's cleaning: a sequence -> tuple
    cleaned.pop("http.url", None)
    clean.pop("http.url", None)
    assert cleaned == clean


@pytest.mark.parametrize("setter", ["set_attribute", "set_attributes", "set_plain_attributes"])
def test_a_vouched_span_given_a_bool_or_float_later_encodes_them_as_such(setter: str) -> None:
    """A span started with str/int values vouched (``plain=True``) lets the encoder skip its
    type check, until any other value is set: True and 1.5 then stay a bool and a double
    (a skipped check would encode True as the int 1 from the field cache)."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

    from hyperdx.opentelemetry.export._spans import encode_span

    tracer = TracerProvider().get_tracer("t")
    attrs = {"n": 1, "f": 2, "s": "x"}
    for warm in (True, False):  # the first span fills the field cache with n=1 and f=2
        span: Any = fast_span.start_span(
            tracer, "s", otel_context.Context(), SpanKind.SERVER, dict(attrs), plain=True
        )
        assert span._hyperdx_str_int
        if not warm:
            late = {"n": True, "f": 2.0}
            if setter == "set_attribute":
                for key, value in late.items():
                    span.set_attribute(key, value)
            elif setter == "set_attributes":
                span.set_attributes(late)
            else:
                fast_span.set_plain_attributes(span, late)
            assert not span._hyperdx_str_int
        span.end()
        message = SpanMessage.FromString(encode_span(span))
        values = {kv.key: kv.value for kv in message.attributes}
    assert values["n"].WhichOneof("value") == "bool_value" and values["n"].bool_value is True
    assert values["f"].WhichOneof("value") == "double_value" and values["f"].double_value == 2.0
    assert values["s"].string_value == "x"
