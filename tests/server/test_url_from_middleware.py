"""The lean WSGI path's ``http.url`` (``wsgi.start_server_span(origin=...)`` +
``SpanHygieneProcessor.prepare_server``) exports exactly what the hygiene processor's
``on_start`` produced before: same attributes, same values, same order.

Each request runs twice through a real Flask app (and the plain WSGI middleware) on our span
processors (baggage, hygiene, the batch processor into the SDK's in-memory exporter): once as
is, once with the middleware's preparation switched off (``wsgi._url_plan`` finds no plan, so
``on_start`` computes the URL), and the exported spans are compared field by field. Requests:
with and without a query, secret query fields, userinfo, non-default and default ports, IPv6
hosts, no Host header, no raw URI, an incoming ``traceparent`` and ``baggage``, an app that sets
``http.url`` / ``http.target`` itself; under the three semconv modes, redaction on and off, the
default and a ratio sampler."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import flask
import pytest
from _inprocess import MODE_IDS, MODES
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

from hyperdx.opentelemetry.capture.redact import Redactor
from hyperdx.opentelemetry.export import HyperDXBatchSpanProcessor
from hyperdx.opentelemetry.hygiene import SpanHygieneProcessor
from hyperdx.opentelemetry.server import semconv, wsgi
from hyperdx.opentelemetry.server.flask import FlaskInstrumentor
from hyperdx.opentelemetry.traces import BaggageSpanProcessor, HyperDXSpanProcessors

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
BASE = {
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
    "HTTP_HOST": "127.0.0.1:8000",
    "HTTP_USER_AGENT": "bench/1.0",
}
SECRET_QUERY = "q=1&token=abc&api_key=k2&page=3"
# (id, environ changes, whether the middleware prepares http.url itself)
VARIANTS: list[tuple[str, dict[str, Any], bool]] = [
    ("plain", {}, True),
    ("query", {"QUERY_STRING": "a=1&b=%20x", "RAW_URI": "/items/7?a=1&b=%20x"}, True),
    ("secrets", {"QUERY_STRING": SECRET_QUERY, "RAW_URI": f"/items/7?{SECRET_QUERY}"}, True),
    ("userinfo-host", {"HTTP_HOST": "alice:pw@example.com"}, True),
    (
        "absolute-target",
        {"RAW_URI": "http://alice:pw@example.com/items/7?password=x&a=1"},
        True,
    ),
    ("port-8080", {"HTTP_HOST": "example.com", "SERVER_PORT": "8080"}, True),
    (
        "port-443",
        {"HTTP_HOST": "example.com", "SERVER_PORT": "443", "wsgi.url_scheme": "https"},
        True,
    ),
    ("port-80", {"HTTP_HOST": "example.com", "SERVER_PORT": "80"}, True),
    ("ipv6", {"HTTP_HOST": "[::1]:8000", "SERVER_NAME": "::1"}, True),
    ("ipv6-no-port", {"HTTP_HOST": "[::1]", "SERVER_PORT": "8443"}, True),
    ("non-ascii", {"PATH_INFO": "/items/\xc3\xa9", "RAW_URI": "/items/%C3%A9?secret=s"}, True),
    ("no-host", {"HTTP_HOST": None}, False),
    ("no-raw-uri", {"RAW_URI": None, "QUERY_STRING": "token=t"}, False),
    (
        "traceparent",
        {"HTTP_TRACEPARENT": TRACEPARENT, "QUERY_STRING": "token=t", "RAW_URI": "/items/7?token=t"},
        True,
    ),
    (
        "baggage",
        {
            "HTTP_TRACEPARENT": TRACEPARENT,
            "HTTP_BAGGAGE": "k=v",
            "QUERY_STRING": "token=t",
            "RAW_URI": "/items/7?token=t",
        },
        False,
    ),
    (
        "app-sets-url",
        {"HTTP_X_SET_URL": "1", "QUERY_STRING": "token=t", "RAW_URI": "/items/7?token=t"},
        True,
    ),
]
REDACTORS = {"redact": Redactor(True), "no-redact": Redactor(False)}
SAMPLERS = {"default": None, "ratio": ParentBasedTraceIdRatio(1.0)}


def _environ(changes: dict[str, Any]) -> dict[str, Any]:
    environ = {k: v for k, v in {**BASE, **changes}.items() if v is not None}
    if "RAW_URI" not in environ:
        environ.pop("QUERY_STRING", None)
    return environ


class _Pipeline:
    """Our span processors over a real batch processor and the SDK's in-memory exporter; counts
    the hygiene processor's own ``on_start`` computations."""

    def __init__(self, redactor: Redactor, sampler: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.hygiene = SpanHygieneProcessor(redactor)
        self.computed = 0
        start_plain = self.hygiene._start_plain

        def counting(*args: Any) -> None:
            self.computed += 1
            start_plain(*args)

        self.hygiene._start_plain = counting  # type: ignore[method-assign]
        processors = HyperDXSpanProcessors(
            BaggageSpanProcessor(), self.hygiene, HyperDXBatchSpanProcessor(self.exporter)
        )
        kwargs = {} if sampler is None else {"sampler": sampler}
        self.tracer_provider = TracerProvider(
            active_span_processor=processors, shutdown_on_exit=False, **kwargs
        )

    def exported(self) -> list[tuple[Any, ...]]:
        self.tracer_provider.force_flush()
        spans = self.exporter.get_finished_spans()
        self.exporter.clear()
        return [
            (s.name, s.kind, s.status.status_code, list((s.attributes or {}).items()))
            for s in spans
        ]


def _flask_app(pipeline: _Pipeline) -> flask.Flask:
    app = flask.Flask("url_from_middleware")

    @app.route("/items/<n>")
    def item(n: str) -> str:
        if flask.request.headers.get("X-Set-Url"):
            span = trace.get_current_span()
            span.set_attribute("http.url", "https://bob:pw@h.example/late?password=p&x=1")
            span.set_attribute("http.target", "/late?session=s&x=1")
        return f"item {n}"

    FlaskInstrumentor.instrument_app(
        app, tracer_provider=pipeline.tracer_provider, meter_provider=MeterProvider()
    )
    return app


def _call(app: Any, environ: dict[str, Any]) -> None:
    def start_response(status: str, headers: list[Any], *args: Any) -> None:
        pass

    body = app(environ, start_response)
    b"".join(body)
    close = getattr(body, "close", None)
    if close:
        close()


def _runs(
    app: Any, pipeline: _Pipeline, monkeypatch: pytest.MonkeyPatch, environ: dict[str, Any]
) -> tuple[list[Any], int, list[Any], int]:
    """(exported, hygiene computations) with the middleware's preparation, then without."""
    wsgi._URL_PLANS.clear()
    pipeline.computed = 0
    _call(app, dict(environ))
    prepared, prepared_computed = pipeline.exported(), pipeline.computed
    with monkeypatch.context() as patch:
        patch.setattr(wsgi, "_url_plan", lambda tracer: wsgi._NO_PLAN)
        wsgi._URL_PLANS.clear()
        pipeline.computed = 0
        _call(app, dict(environ))
        hygiene, hygiene_computed = pipeline.exported(), pipeline.computed
    wsgi._URL_PLANS.clear()
    return prepared, prepared_computed, hygiene, hygiene_computed


@pytest.fixture
def uninstrument_flask() -> Iterator[None]:
    yield
    FlaskInstrumentor().uninstrument()


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("redactor", REDACTORS.values(), ids=REDACTORS.keys())
@pytest.mark.parametrize("sampler", SAMPLERS.values(), ids=SAMPLERS.keys())
def test_flask_spans_are_what_the_hygiene_processor_made(
    mode: semconv.Mode,
    redactor: Redactor,
    sampler: Any,
    monkeypatch: pytest.MonkeyPatch,
    uninstrument_flask: None,
) -> None:
    monkeypatch.setattr(semconv, "current_mode", lambda: mode)
    pipeline = _Pipeline(redactor, sampler)
    app = _flask_app(pipeline)
    for name, changes, expect_prepared in VARIANTS:
        environ = _environ(changes)
        prepared, prepared_computed, hygiene, hygiene_computed = _runs(
            app, pipeline, monkeypatch, environ
        )
        assert len(prepared) == 1, name
        assert prepared == hygiene, name
        attrs = dict(prepared[0][3])
        # The preparation ran where it applies (else this test would compare hygiene twice),
        # and the comparison is not vacuous: a URL and the expected redaction are there.
        assert hygiene_computed == 1, name
        assert prepared_computed == (0 if expect_prepared else 1), name
        if name == "app-sets-url":
            assert attrs["http.url"].endswith("late?password=[REDACTED]&x=1") == redactor.enabled
            if mode.old:
                assert attrs["http.target"].endswith("session=[REDACTED]&x=1") == (redactor.enabled)
        elif name not in ("no-host",) and (mode.old or name != "no-raw-uri"):
            assert "http.url" in attrs, name
        if name == "absolute-target" and redactor.enabled:
            # a password in an absolute-form target's user-info: redacted in the URL attributes
            assert ":pw@" not in attrs["http.url"] + str(attrs.get("http.target")), name
            if mode.old:  # http.url from the raw target (the new keys hold the path only)
                assert attrs["http.url"].startswith("http://alice:[REDACTED]@example.com/"), name
        if name == "secrets":
            url = attrs["http.url"]
            assert ("abc" in url) != redactor.enabled and ("k2" in url) != redactor.enabled
            assert url.endswith("page=3")


def test_plain_wsgi_middleware_spans_are_what_the_hygiene_processor_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline = _Pipeline(Redactor(True), None)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ.get("HTTP_X_SET_URL"):
            span = trace.get_current_span()
            span.set_attribute("http.url", "http://h/late?token=t")
        return [b"ok"]

    middleware = wsgi.OpenTelemetryWSGIMiddleware(
        app, tracer_provider=pipeline.tracer_provider, meter_provider=MeterProvider()
    )
    for (name, changes, expect_prepared), mode in itertools.product(VARIANTS, MODES):
        middleware.telemetry.mode = mode
        prepared, prepared_computed, hygiene, hygiene_computed = _runs(
            middleware, pipeline, monkeypatch, _environ(changes)
        )
        assert len(prepared) == 1, name
        assert prepared == hygiene, (name, mode)
        assert (prepared_computed, hygiene_computed) == (0 if expect_prepared else 1, 1), name


def test_an_added_span_processor_turns_the_preparation_off(
    monkeypatch: pytest.MonkeyPatch, uninstrument_flask: None
) -> None:
    """A processor added later runs before ours could see the span: the URL is then left to
    the hygiene processor's ``on_start`` again (and the result is still the same)."""
    pipeline = _Pipeline(Redactor(True), None)
    app = _flask_app(pipeline)
    environ = _environ({name: changes for name, changes, _ in VARIANTS}["secrets"])
    _call(app, dict(environ))
    assert pipeline.computed == 0
    before = pipeline.exported()
    extra = InMemorySpanExporter()
    pipeline.tracer_provider.add_span_processor(SimpleSpanProcessor(extra))
    _call(app, dict(environ))
    assert pipeline.computed == 1
    after = pipeline.exported()
    assert [a[3] for a in after] == [b[3] for b in before]
    assert list((extra.get_finished_spans()[0].attributes or {}).items()) == after[0][3]


@pytest.mark.parametrize("mode", ["", "http", "http/dup"])
def test_django_spans_are_what_the_hygiene_processor_made(mode: str) -> None:
    """Django's lean middleware (WSGI) passes the head's origin too: the same comparison, in a
    process of its own (Django's settings are global), through Django's test client."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from support.apps import base_env

    here = Path(__file__).resolve().parent
    env = base_env({"OTEL_SEMCONV_STABILITY_OPT_IN": mode})
    env["PYTHONPATH"] = f"{here.parent}{os.pathsep}{env.get('PYTHONPATH', '')}"
    out = subprocess.run(
        [sys.executable, str(here / "url_django_run.py")],
        env=env,
        cwd=here,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-3000:]
    runs = json.loads(out.stdout)
    assert len(runs) == len(VARIANTS) - 1  # all but no-host (the test client sends one)
    for run in runs:
        name = run["name"]
        assert len(run["prepared"]) == 1 and run["prepared"] == run["hygiene"], name
        assert run["computed"] == [0 if run["expect_prepared"] else 1, 1], name
    urls = {run["name"]: run["url"] for run in runs}
    assert urls["secrets"].endswith("token=[REDACTED]&api_key=[REDACTED]&page=3")
    assert urls["app-sets-url"] == "https://bob:[REDACTED]@h.example/late?password=[REDACTED]&x=1"
