"""The span layer's fast paths (fast_span's span, the composite processor, the inlined histogram
aggregation) give exactly what the SDK's own path gives, and step aside when they must."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from _tracing import CountingIds, Ended
from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind

from hyperdx.opentelemetry import fast_span, metrics_fast
from hyperdx.opentelemetry.capture.redact import get_redactor
from hyperdx.opentelemetry.export import HyperDXBatchSpanProcessor, HyperDXSpanExporter
from hyperdx.opentelemetry.export import _spans as export_spans
from hyperdx.opentelemetry.export import processors as export_processors
from hyperdx.opentelemetry.export._spans import assemble, group_encoded
from hyperdx.opentelemetry.hygiene import SpanHygieneProcessor
from hyperdx.opentelemetry.options import resolve
from hyperdx.opentelemetry.traces import (
    BaggageSpanProcessor,
    HyperDXSpanProcessors,
    build_tracer_provider,
)

ATTRS = {
    "http.method": "GET",
    "http.scheme": "http",
    "http.host": "127.0.0.1:8000",
    "net.host.port": 8000,
    "http.target": "/items/7?token=secret&page=2",
    "net.peer.port": 50123,
    "http.route": "/items/<int:item_id>",
}


def test_the_verified_aggregation_is_installed() -> None:
    """Fails when an SDK release changes the histogram aggregation metrics_fast inlines."""
    assert metrics_fast.aggregate_fingerprints() == metrics_fast.AGGREGATE_VERIFIED
    assert metrics_fast._AGGREGATE_VERIFIED


def _state(obj: Any) -> dict[str, Any]:
    """An object's fields, nested SDK containers by their own fields, locks by type."""
    out: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if isinstance(value, type(threading.Lock())):
            out[name] = "lock"
        elif type(value).__module__.startswith("opentelemetry") and hasattr(value, "__dict__"):
            if type(value).__name__ in ("BoundedAttributes", "BoundedList"):
                out[name] = (type(value).__name__, _state(value))
            else:
                out[name] = value
        elif type(value).__name__ == "deque":
            out[name] = (list(value), value.maxlen)
        else:
            out[name] = value
    return out


def test_fast_span_holds_what_the_sdk_span_holds() -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "same"}))
    tracer = provider.get_tracer("t", "1")
    sdk: Any = tracer.start_span("GET /items", Context(), SpanKind.SERVER, ATTRS, start_time=5)
    fast: Any = fast_span.start_span(tracer, "GET /items", Context(), SpanKind.SERVER, ATTRS, 5)
    assert type(fast).__name__ == type(sdk).__name__ == "_Span"
    want, got = _state(sdk), _state(fast)
    for state in (want, got):
        state["_context"] = state["_context"].trace_flags  # ids differ, flags must not
        state["_record_end_metrics"] = None  # a new closure per span
    assert got == want
    for span in (sdk, fast):
        span.set_attribute("http.status_code", 200)
        span.set_attribute("http.method", "POST")  # an existing key moves to the end
        span.end(end_time=9)
    assert list(fast.attributes.items()) == list(sdk.attributes.items())


def _run(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("opentelemetry.instrumentation.flask", "0.66b1")
    with_baggage = baggage.set_baggage("tenant", "acme", Context())
    for parent in (Context(), None, with_baggage):
        span: Any = fast_span.start_span(
            tracer, "GET /items/<int:item_id>", parent, SpanKind.SERVER, dict(ATTRS), 10
        )
        span.set_attribute("http.status_code", 200)
        span.end(end_time=20)
    tracer.start_span("internal", Context(), SpanKind.INTERNAL, {"n": 1.5}, start_time=25).end(
        end_time=30
    )


def _queued_request(processor: HyperDXBatchSpanProcessor) -> bytes:
    """The export request of what is queued, the deferred items encoded as the exporter
    encodes them."""
    queued = list(processor._batcher._queue)
    return assemble(group_encoded(processor.span_exporter._finish_encoding(queued)))  # type: ignore[attr-defined]


def _discard(batch: HyperDXBatchSpanProcessor) -> None:
    """Shut down without sending (nothing listens on the exporter's port)."""
    batch._batcher._queue.clear()
    batch.shutdown(timeout_millis=0)


def _provider(kept: Ended | None = None) -> tuple[TracerProvider, HyperDXBatchSpanProcessor]:
    exporter = HyperDXSpanExporter("http://127.0.0.1:9/v1/traces")
    batch = HyperDXBatchSpanProcessor(exporter, schedule_delay_millis=3_600_000)
    processors = HyperDXSpanProcessors(
        BaggageSpanProcessor(), SpanHygieneProcessor(get_redactor(True, ())), batch
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": "layer"}),
        id_generator=CountingIds(9),
        active_span_processor=processors,
    )
    if kept is not None:
        provider.add_span_processor(kept)
    return provider, batch


def test_composite_fast_path_the_sdk_loop_and_the_sdk_span_queue_identical_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, fast_batch = _provider()
    _run(fast)
    kept = Ended()
    looped, looped_batch = _provider(kept)  # a user processor: the SDK's loop, ReadableSpans
    _run(looped)
    # An API whose SpanContext is not the known tuple: the encoder reads the properties.
    monkeypatch.setattr(export_spans, "_CONTEXT_IS_TUPLE", False)
    monkeypatch.setattr(export_processors, "_CONTEXT_IS_TUPLE", False)
    properties, properties_batch = _provider()
    _run(properties)
    monkeypatch.setattr(fast_span, "ENABLED", False)  # an SDK whose fingerprints differ
    off, off_batch = _provider()
    _run(off)
    want = _queued_request(off_batch)
    assert _queued_request(properties_batch) == want
    assert _queued_request(fast_batch) == want
    assert _queued_request(looped_batch) == want
    # ...and those are the stock encoder's bytes of the spans the user's processor received.
    assert want == encode_spans(kept.ended).SerializeToString()
    assert [type(s).__name__ for s in kept.ended] == ["ReadableSpan"] * 4
    rows = {s.name: dict(s.attributes) for s in kept.ended}
    assert rows["GET /items/<int:item_id>"]["http.url"] == (
        "http://127.0.0.1:8000/items/7?token=[REDACTED]&page=2"
    )
    for batch in (fast_batch, looped_batch, properties_batch, off_batch):
        _discard(batch)


def test_baggage_is_copied_only_from_a_context_that_holds_some() -> None:
    kept = Ended()
    provider, batch = _provider(kept)
    _run(provider)
    copied = [dict(s.attributes).get("tenant") for s in kept.ended]
    assert copied == [None, None, "acme", None]
    _discard(batch)


def test_the_distro_provider_uses_the_composite_and_keeps_user_processors_working() -> None:
    settings = resolve(env={"HYPERDX_API_KEY": "k"})
    provider = build_tracer_provider(settings, Resource.create({}), None)
    processors: Any = provider._active_span_processor
    assert type(processors) is HyperDXSpanProcessors
    assert [type(p).__name__ for p in processors._span_processors] == [
        "BaggageSpanProcessor",
        "SpanHygieneProcessor",
    ]
    kept = Ended()
    provider.add_span_processor(kept)
    tracer = provider.get_tracer("t")
    fast_span.start_span(tracer, "s", Context(), SpanKind.SERVER, dict(ATTRS)).end()
    assert [s.name for s in kept.ended] == ["s"]
    assert "http.url" in kept.ended[0].attributes


def _histogram_points(inlined: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(metrics_fast, "_AGGREGATE_VERIFIED", inlined)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter())
    metrics_fast.adopt(provider)
    instrument = provider.get_meter("m").create_histogram("http.server.duration", unit="ms")
    histogram = metrics_fast.histogram(instrument)
    assert isinstance(histogram, metrics_fast.FastHistogram)
    for value in (5, 0, 7.5, 10_000, 3, 3, 250):
        histogram.record(value, {"http.method": "GET", "http.status_code": 200})
    data: Any = reader.get_metrics_data()
    [point] = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    return (point.count, point.sum, point.min, point.max, list(point.bucket_counts))


def test_inlined_aggregation_gives_the_sdk_aggregates_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inlined = _histogram_points(True, monkeypatch)
    assert inlined == _histogram_points(False, monkeypatch)
    assert inlined[:4] == (7, 10_268.5, 0, 10_000)


class _RecordOnly(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY, {"kept": "here"})

    def get_description(self) -> str:
        return "record-only"


def test_recorded_but_unsampled_spans_are_not_queued() -> None:
    provider, batch = _provider()
    provider.sampler = _RecordOnly()
    tracer = provider.get_tracer("t")
    span: Any = fast_span.start_span(tracer, "s", Context(), SpanKind.SERVER, dict(ATTRS))
    assert span.is_recording() and not span.get_span_context().trace_flags.sampled
    span.end()
    sampled: Any = fast_span.start_span(
        TracerProvider().get_tracer("t"), "x", Context(), SpanKind.SERVER, {}
    )
    assert sampled.get_span_context().trace_flags.sampled
    assert len(batch._batcher._queue) == 0
    _discard(batch)
