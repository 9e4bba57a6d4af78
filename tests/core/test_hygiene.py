"""Secrets in URLs and access logs never leave the process, even with network capture off;
HTTP server spans carry `http.url` (HyperDX's network panel needs it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts import run_script
from support.otlp import running_receiver

PROGRAM = """
    import logging, threading, urllib.request
    from flask import Flask
    from werkzeug.serving import make_server
    logging.basicConfig(level=logging.INFO)   # so werkzeug's access lines are exported too
    app = Flask(__name__)

    @app.get("/reset")
    def reset():
        logging.getLogger("app").warning("reset requested: password=hunter2 user=ada")
        return "ok"

    server = make_server("127.0.0.1", 0, app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/reset?token=s3cr3t-tok&page=2"
    print(urllib.request.urlopen(url).read().decode())
    server.shutdown()
"""
SECRETS = ("s3cr3t-tok", "hunter2")


def _everything(sink: object) -> str:
    tables = sink.tables()  # type: ignore[attr-defined]
    return json.dumps({t: sink.rows(t) for t in tables})  # type: ignore[attr-defined]


def test_query_secrets_are_redacted_everywhere_with_capture_off(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        proc = run_script(PROGRAM, receiver, tmp_path, OTEL_METRIC_EXPORT_INTERVAL="200")
        assert "ok" in proc.stdout, proc.stderr
        [server] = sink.wait_for("otel_traces", where=lambda r: r["SpanKind"] == "Server")
        [client] = sink.wait_for("otel_traces", where=lambda r: r["SpanKind"] == "Client")
        sink.wait_for("otel_logs", where=lambda r: "reset requested" in r["Body"])
        sink.wait_for("otel_logs", where=lambda r: "GET /reset" in r["Body"])
        sink.wait_for(
            "otel_metrics_histogram", where=lambda r: r["MetricName"].startswith("http.client")
        )
        everything = _everything(sink)
    for secret in SECRETS:
        assert secret not in everything
    url = server["SpanAttributes"]["http.url"]
    assert url.endswith("/reset?token=[REDACTED]&page=2"), url
    assert client["SpanAttributes"]["http.url"].endswith("?token=[REDACTED]&page=2")
    assert "password=[REDACTED] user=ada" in everything  # the rest of the line is kept


def test_explicit_opt_out_keeps_values(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        run_script(PROGRAM, receiver, tmp_path, HYPERDX_CAPTURE_REDACT="false")
        [server] = sink.wait_for("otel_traces", where=lambda r: r["SpanKind"] == "Server")
    assert server["SpanAttributes"]["http.url"].endswith("/reset?token=s3cr3t-tok&page=2")


def test_free_text_redaction_sees_pairs_inside_other_pairs() -> None:
    from hyperdx.opentelemetry.capture.redact import get_redactor

    redactor = get_redactor(True, ())
    assert redactor.text("reset requested: password=hunter2 user=ada") == (
        "reset requested: password=[REDACTED] user=ada"
    )
    assert redactor.text("token: abc, url: http://x/?a=1") == (
        "token: [REDACTED], url: http://x/?a=1"
    )
    assert redactor.text("nothing secret here: a=1") == "nothing secret here: a=1"


def _ended_spans(*steps: object) -> list[dict[str, object]]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from hyperdx.opentelemetry.capture.redact import get_redactor
    from hyperdx.opentelemetry.hygiene import SpanHygieneProcessor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SpanHygieneProcessor(get_redactor(True, ())))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    start = {"http.scheme": "http", "http.host": "h:1", "http.target": "/a?page=1"}
    for late in steps:
        span = provider.get_tracer("t").start_span("GET", kind=SpanKind.SERVER, attributes=start)
        if late:
            span.set_attributes(late)  # type: ignore[arg-type]
        span.end()
    return [dict(s.attributes or {}) for s in exporter.get_finished_spans()]


def test_url_attributes_set_after_start_are_still_redacted_at_end() -> None:
    untouched, late_target, late_host = _ended_spans(
        None, {"http.target": "/a?token=s3cr3t"}, {"url.full": "http://u:pw@h/x?api_key=k"}
    )
    assert untouched["http.url"] == "http://h:1/a?page=1"
    assert late_target["http.target"] == "/a?token=[REDACTED]"
    assert late_host["url.full"] == "http://u:[REDACTED]@h/x?api_key=[REDACTED]"
    assert late_host["http.url"] == "http://h:1/a?page=1"


def _pipeline_spans(steps: list[Any], kind: Any = None) -> tuple[list[dict[str, Any]], list[int]]:
    """Spans through the hygiene processor, with the number of full `_updates` passes each."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from hyperdx.opentelemetry.capture.redact import get_redactor
    from hyperdx.opentelemetry.hygiene import SpanHygieneProcessor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    hygiene = SpanHygieneProcessor(get_redactor(True, ()))
    passes: list[int] = []
    updates = hygiene._updates

    def counted(span: Any) -> dict[str, Any]:
        passes[-1] += 1
        return updates(span)

    hygiene._updates = counted  # type: ignore[method-assign]
    provider.add_span_processor(hygiene)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    start = {"http.scheme": "http", "http.host": "h:1", "http.target": "/a?page=1"}
    for step in steps:
        passes.append(0)
        span = provider.get_tracer("t").start_span(
            "GET", kind=kind or SpanKind.SERVER, attributes=start
        )
        step(span)
        span.end()
    return [dict(s.attributes or {}) for s in exporter.get_finished_spans()], passes


def test_end_redoes_hygiene_only_when_a_url_attribute_changed() -> None:
    same_target = "/a?page=1"
    spans, passes = _pipeline_spans(
        [
            lambda span: span.set_attribute("http.status_code", 200),
            lambda span: span.set_attribute("http.target", "/a?token=s3cr3t&page=1"),
            lambda span: span.set_attribute("url.query", "api_key=k"),
            lambda span: span.set_attribute("http.url", "http://h/x?password=p"),
            # an equal but new object: redone (harmless), and still clean
            lambda span: span.set_attribute("http.target", "".join(same_target)),
        ]
    )
    assert passes == [1, 2, 2, 2, 2]
    untouched, late_target, late_query, late_url, same = spans
    assert untouched["http.url"] == "http://h:1/a?page=1"
    assert untouched["http.status_code"] == 200
    assert late_target["http.target"] == "/a?token=[REDACTED]&page=1"
    assert late_query["url.query"] == "api_key=[REDACTED]"
    assert late_url["http.url"] == "http://h/x?password=[REDACTED]"
    assert same["http.target"] == same_target
    assert "s3cr3t" not in json.dumps(spans)


def test_client_span_url_set_after_start_is_redacted() -> None:
    from opentelemetry.trace import SpanKind

    spans, passes = _pipeline_spans(
        [
            lambda span: None,
            lambda span: span.set_attribute("url.full", "https://u:pw@h/x?token=t"),
        ],
        kind=SpanKind.CLIENT,
    )
    assert passes == [1, 2]
    assert "http.url" not in spans[0]  # http.url is built for server spans only
    assert spans[1]["url.full"] == "https://u:[REDACTED]@h/x?token=[REDACTED]"


def test_server_span_without_a_url_at_start_gets_one_at_end() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind

    from hyperdx.opentelemetry.capture.redact import get_redactor
    from hyperdx.opentelemetry.hygiene import SpanHygieneProcessor

    provider = TracerProvider()
    provider.add_span_processor(SpanHygieneProcessor(get_redactor(True, ())))
    span: Any = provider.get_tracer("t").start_span(
        "GET", kind=SpanKind.SERVER, attributes={"http.scheme": "http", "http.target": "/a?pwd=1"}
    )
    assert "http.url" not in span.attributes
    span.set_attribute("http.host", "late:8")
    span.end()
    assert span.attributes["http.url"] == "http://late:8/a?pwd=[REDACTED]"


@pytest.mark.parametrize(
    "url",
    [
        "http://h/a?token=s3cr3t&page=2",
        "https://user:pw@h:8/x?api_key=k&password=p&x=1#frag",
        "http://h/a?Authorization=Bearer%20x&session_id=1",
        "http://h/plain/path",
        "http://h/a?token",
    ],
)
def test_redaction_is_idempotent(url: str) -> None:
    """What lets `_on_ending` skip a span whose URL attributes are the ones `on_start` left."""
    from hyperdx.opentelemetry.capture.redact import get_redactor

    redactor = get_redactor(True, ())
    once = redactor.url(url)
    assert redactor.url(once) == once
    target = url.split("/", 3)[-1]
    assert redactor.target(redactor.target("/" + target)) == redactor.target("/" + target)
    query = url.partition("?")[2]
    assert redactor.query(redactor.query(query)) == redactor.query(query)


def test_an_absolute_form_target_is_redacted_as_a_url() -> None:
    """``GET http://user:pw@host/path?token=t`` (a request sent to a proxy): its target is a URL
    whose user-info password is a secret too, and it is the request's URL as it is."""
    from hyperdx.opentelemetry.capture.redact import get_redactor
    from hyperdx.opentelemetry.hygiene import request_url

    redactor = get_redactor(True, ())
    target = "http://alice:pw@example.com/a?token=t&x=1"
    assert redactor.target(target) == "http://alice:[REDACTED]@example.com/a?token=[REDACTED]&x=1"
    assert redactor.target("/a?token=t") == "/a?token=[REDACTED]"
    assert redactor.target("/a/http://b@c") == "/a/http://b@c"  # origin form: a path
    assert request_url("http://h:1", target) == target
    assert request_url("http://h:1", "/a?x=1") == "http://h:1/a?x=1"
    assert get_redactor(False, ()).target(target) == target
