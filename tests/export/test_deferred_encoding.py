"""Spans queued as field snapshots and encoded by the export thread give the bytes the stock
encoder gives for the same spans, as they were when they ended."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from opentelemetry.trace.status import Status, StatusCode

from hyperdx.opentelemetry import fast_span
from hyperdx.opentelemetry.capture.redact import get_redactor
from hyperdx.opentelemetry.export import HyperDXBatchSpanProcessor, dropped
from hyperdx.opentelemetry.export import exporters as export_exporters
from hyperdx.opentelemetry.export._spans import assemble, encode_span, group_encoded
from hyperdx.opentelemetry.export.exporters import HyperDXSpanExporter
from hyperdx.opentelemetry.hygiene import SpanHygieneProcessor
from hyperdx.opentelemetry.traces import BaggageSpanProcessor, HyperDXSpanProcessors

ATTRS = {"http.method": "GET", "http.target": "/items/7", "net.host.port": 8000}


def _provider(limits: SpanLimits | None = None) -> tuple[Any, HyperDXBatchSpanProcessor]:
    """The distro's span pipeline (composite + hygiene + batch) over an exporter that is never
    reached (nothing listens on port 9; the queue is inspected instead)."""
    exporter = HyperDXSpanExporter("http://127.0.0.1:9/v1/traces")
    batch = HyperDXBatchSpanProcessor(exporter, schedule_delay_millis=3_600_000)
    processors = HyperDXSpanProcessors(
        BaggageSpanProcessor(), SpanHygieneProcessor(get_redactor(True, ())), batch
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": "deferred"}),
        active_span_processor=processors,
        span_limits=limits,
    )
    return provider.get_tracer("deferred.lib", "2.0"), batch


def _discard(batch: HyperDXBatchSpanProcessor) -> None:
    batch._batcher._queue.clear()
    batch.shutdown(timeout_millis=0)


def _finished(batch: HyperDXBatchSpanProcessor) -> bytes:
    queued = list(batch._batcher._queue)
    exporter: Any = batch.span_exporter
    return assemble(group_encoded(exporter._finish_encoding(queued)))


def _start(tracer: Any, name: str, attrs: Any, parent: Any = None, plain: bool = False) -> Any:
    ctx = Context() if parent is None else set_span_in_context(NonRecordingSpan(parent))
    return fast_span.start_span(tracer, name, ctx, SpanKind.SERVER, attrs, 10, plain=plain)


def test_deferred_spans_encode_to_the_stock_encoders_bytes() -> None:
    tracer, batch = _provider(SpanLimits(max_span_attributes=6))
    ended = []
    remote = SpanContext(7 << 70, 99, True, TraceFlags(1), TraceState([("vendor", "v1")]))

    def run(span: Any, *, end: int = 20) -> None:
        span.end(end_time=end)
        ended.append(span._readable_span())

    plain = _start(tracer, "GET /items/<id>", dict(ATTRS), plain=True)
    plain.set_attribute("http.status_code", 200)
    run(plain)
    mixed = _start(tracer, "mixed", {"f": 1.5, "s": "x"})
    mixed.set_attribute("ok", True)
    mixed.set_status(Status(StatusCode.ERROR, "boom"))
    run(mixed)
    child = _start(tracer, "child", {"n": 3}, parent=remote)
    child.set_status(StatusCode.OK)
    run(child)
    bare = _start(tracer, "", None)
    run(bare, end=10)
    with_event = _start(tracer, "event", {"n": 1})
    with_event.add_event("e", {"k": [1, 2]}, timestamp=15)
    run(with_event)
    too_many = _start(tracer, "dropped", dict(ATTRS))
    for i in range(8):
        too_many.set_attribute(f"k{i}", i)
    run(too_many)
    # The SDK's own span (a link: not fast_span's): queued through on_end, encoded at hand-off.
    sdk_span: Any = tracer.start_span("linked", links=[], attributes={"a": "b"}, start_time=1)
    sdk_span.end(end_time=2)
    ended.append(sdk_span._readable_span())

    queued = list(batch._batcher._queue)
    deferred = [type(item[2]) is not bytes for item in queued]
    # The usual spans are deferred; events and dropped attributes are encoded at hand-off.
    assert deferred == [True, True, True, True, False, False, False]
    assert queued[0][11] is True and queued[1][11] is False  # str/int vouched for the first
    assert _finished(batch) == encode_spans(ended).SerializeToString()
    _discard(batch)


def test_a_span_changed_after_its_end_is_exported_as_it_ended() -> None:
    tracer, batch = _provider()
    span = _start(tracer, "GET /items/<id>", dict(ATTRS), plain=True)
    span.end(end_time=20)
    at_end = encode_span(span._readable_span())
    span.set_attribute("late", 1)
    span.set_attributes({"later": "x"})
    span.set_status(Status(StatusCode.ERROR, "late"))
    span.add_event("late")
    span.update_name("renamed")
    span.record_exception(ValueError("late"))
    [fields] = batch._batcher._queue
    assert type(fields[2]) is int  # a deferred snapshot
    exporter: Any = batch.span_exporter
    [(_, _, encoded)] = exporter._finish_encoding([fields])
    assert encoded == at_end
    _discard(batch)


def test_an_unencodable_deferred_span_is_counted_and_the_rest_is_sent() -> None:
    tracer, batch = _provider()
    good = _start(tracer, "good", {"n": 1})
    good.end(end_time=20)
    good_item = batch._batcher._queue[0]
    broken = (*good_item[:2], *(None,) * (len(good_item) - 2))  # no ids, no kind
    before = dropped().get("spans_unencodable", 0)
    exporter: Any = batch.span_exporter
    out = exporter._finish_encoding([broken, good_item])
    assert out == [(good_item[0], good_item[1], encode_span(good._readable_span()))]
    assert dropped()["spans_unencodable"] - before == 1
    assert exporter._finish_encoding([broken]) == []
    _discard(batch)


@pytest.mark.parametrize(
    ("deferred", "slice_size", "sleeps"), [(70, 32, 2), (64, 32, 1), (5, 1, 4)]
)
def test_deferred_encoding_releases_the_gil_between_slices(
    monkeypatch: pytest.MonkeyPatch, deferred: int, slice_size: int, sleeps: int
) -> None:
    tracer, batch = _provider()
    exporter: Any = batch.span_exporter
    exporter._slice_size = slice_size
    for i in range(deferred):
        _start(tracer, f"s{i}", {"i": i}).end(end_time=20)
    calls: list[float] = []
    monkeypatch.setattr(export_exporters.time, "sleep", calls.append)
    out = exporter._finish_encoding(list(batch._batcher._queue))
    assert len(calls) == sleeps
    assert all(type(body) is bytes for _, _, body in out) and len(out) == deferred
    _discard(batch)


def test_a_queued_snapshot_keeps_no_per_span_gc_tracked_object_but_itself() -> None:
    """Young-generation collections come with every 700 new tracked objects that stay alive:
    a queued span must keep only its tuple alive, as an encoded item did (not the span, its
    context, its lists...). Its other tracked members are shared, long-lived objects."""
    tracer, batch = _provider()
    span = _start(tracer, "GET /items/<id>", dict(ATTRS), plain=True)
    span.set_attribute("http.status_code", 200)
    span.end(end_time=20)
    [item] = batch._batcher._queue
    shared = (span._resource, span._instrumentation_scope, span._kind, span._status)
    shared += (
        span.get_span_context().trace_state,
        span._span_processor._span_processors[-1]._check,
    )
    tracked = [m for m in item if gc.is_tracked(m)]
    assert tracked and all(any(m is s for s in shared) for m in tracked), tracked
    assert not any(m is span or m is span.get_span_context() for m in item)
    _discard(batch)


def test_an_exporter_without_a_deferred_encoder_gets_spans_encoded_at_their_end() -> None:
    """A subclass that turns the deferred encoding off still receives encoded items only."""

    class Eager(HyperDXSpanExporter):
        encode_deferred = None

    exporter = Eager("http://127.0.0.1:9/v1/traces")
    batch = HyperDXBatchSpanProcessor(exporter, schedule_delay_millis=3_600_000)
    provider = TracerProvider(
        active_span_processor=HyperDXSpanProcessors(
            BaggageSpanProcessor(), SpanHygieneProcessor(get_redactor(True, ())), batch
        )
    )
    span = _start(provider.get_tracer("t"), "eager", {"n": 1}, plain=True)
    span.end(end_time=20)
    [item] = batch._batcher._queue
    assert item == (span._resource, span._instrumentation_scope, encode_span(span))
    _discard(batch)


LATE_URL_STEPS: list[tuple[str, dict[str, Any]]] = [
    ("untouched", {}),
    ("late target", {"http.target": "/a?token=s3cr3t&page=1"}),
    ("late query", {"url.query": "api_key=k"}),
    ("late url", {"http.url": "http://u:pw@h/x?password=p"}),
    ("late full", {"url.full": "https://u:pw@h/x?token=t"}),
    ("late host, no url at start", {"http.host": "late:8"}),
    ("late host, then full", {"http.host": "late:8", "x": "y"}),
    ("equal target again", {"http.target": "".join(["/a?", "page=1"])}),
]


def _late_url_attributes(ours: bool, limits: SpanLimits | None) -> list[tuple[Any, ...]]:
    """Each step's span (a fast_span SERVER span, URL attributes set after its start), as
    exported: (attributes in order, dropped count). ``ours``: the distro's composite, whose
    hygiene end check runs on the export thread; else the SDK's processor loop (a second
    processor makes the composite hand over), whose ``_on_ending`` runs at ``end``."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer, batch = _provider(limits)
    memory = InMemorySpanExporter()
    if not ours:
        tracer.span_processor.add_span_processor(SimpleSpanProcessor(memory))
    for label, late in LATE_URL_STEPS:
        start = {"http.scheme": "http", "http.host": "h:1", "http.target": "/a?page=1"}
        if label.startswith("late host"):  # no http.url at start: the check adds it
            start = {"http.scheme": "http", "http.target": "/a?pwd=1"}
        span = _start(tracer, "GET", start, plain=True)
        for key, value in late.items():
            span.set_attribute(key, value)
        span.end(end_time=20)
    queued = list(batch._batcher._queue)
    if ours:
        checked_later = [type(item[2]) is int and item[13] is not None for item in queued]
        # Deferred with the check, but for a span the limit made drop attributes (hand-off).
        assert checked_later[0] and (limits is not None or all(checked_later))
        request = ExportTraceServiceRequest.FromString(_finished(batch))
        [spans] = [s.spans for r in request.resource_spans for s in r.scope_spans]
        out = [
            (
                tuple((kv.key, kv.value.string_value) for kv in s.attributes),
                s.dropped_attributes_count,
            )
            for s in spans
        ]
    else:
        out = [
            (tuple((k, str(v)) for k, v in (s.attributes or {}).items()), s.dropped_attributes)
            for s in memory.get_finished_spans()
        ]
    _discard(batch)
    return out


@pytest.mark.parametrize("limits", [None, SpanLimits(max_span_attributes=4)], ids=["", "full"])
def test_url_attributes_set_after_start_are_redacted_by_the_deferred_check(
    limits: SpanLimits | None,
) -> None:
    """The hygiene's end check, run by the export thread on the queued snapshot, exports what
    its run at ``end`` (the SDK loop) exports: same attributes, same order, same drops."""
    ours = _late_url_attributes(True, limits)
    sdk = _late_url_attributes(False, limits)
    assert ours == sdk
    text = repr(ours)
    for secret in ("s3cr3t", "api_key=k", ":pw@", "password=p", "pwd=1", "token=t"):
        assert secret not in text, secret
    by_label = dict(zip([label for label, _ in LATE_URL_STEPS], ours, strict=True))
    assert (
        dict(by_label["late url"][0])["http.url"] == "http://u:[REDACTED]@h/x?password=[REDACTED]"
    )
    assert dict(by_label["late host, no url at start"][0])["http.url"] == (
        "http://late:8/a?pwd=[REDACTED]"
    )
    # With 4 attributes at most, the check's http.url makes the full span drop one, counted.
    assert by_label["late host, then full"][1] == (1 if limits else 0)
    assert dict(by_label["late host, then full"][0])["http.url"] == "http://late:8/a?pwd=[REDACTED]"


def test_a_span_the_export_thread_checks_keeps_the_attributes_the_app_set() -> None:
    """Deferred: the check fixes what is exported, not the app's ended span object."""
    tracer, batch = _provider()
    span = _start(
        tracer, "GET", {"http.scheme": "http", "http.host": "h:1", "http.target": "/a"}, plain=True
    )
    span.set_attribute("http.target", "/a?token=s3cr3t")
    span.end(end_time=20)
    assert span.attributes["http.target"] == "/a?token=s3cr3t"
    exporter: Any = batch.span_exporter
    [(_, _, encoded)] = exporter._finish_encoding(list(batch._batcher._queue))
    assert b"s3cr3t" not in encoded and b"/a?token=[REDACTED]" in encoded
    _discard(batch)


def test_a_span_encoded_at_hand_off_is_checked_at_its_end() -> None:
    """A span with an event is not deferred: the check runs on the request thread, first."""
    tracer, batch = _provider()
    span = _start(
        tracer, "GET", {"http.scheme": "http", "http.host": "h:1", "http.target": "/a"}, plain=True
    )
    span.add_event("e", timestamp=15)
    span.set_attribute("http.target", "/a?token=s3cr3t")
    span.end(end_time=20)
    [item] = batch._batcher._queue
    assert type(item[2]) is bytes
    assert b"s3cr3t" not in item[2] and span.attributes["http.target"] == "/a?token=[REDACTED]"
    _discard(batch)
