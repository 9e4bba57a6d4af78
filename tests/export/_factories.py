"""Real SDK spans and log records covering every field the OTLP encoders write."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import (
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.trace.status import Status, StatusCode


class MemorySpans(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[Any] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


class MemoryLogs(LogRecordExporter):
    def __init__(self) -> None:
        self.records: list[Any] = []

    def export(self, batch: Any) -> LogRecordExportResult:
        self.records.extend(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


ODD_VALUES: dict[str, Any] = {
    "s": "text",
    "empty": "",
    "unicode": "żółć ✓ 漢字",
    "long": "x" * 300,
    "t": True,
    "f": False,
    "zero": 0,
    "big": 2**62,
    "neg": -5,
    "float": 1.5,
    "nan_free_float": -0.0,
    "strs": ("a", "b"),
    "ints": [1, -2, 3],
    "bools": [True, False],
    "floats": [0.5],
    "empty_seq": [],
}


def varied_spans() -> list[Any]:
    """Spans from two resources and several scopes (two equal-but-distinct scope objects)."""
    mem = MemorySpans()
    out: list[Any] = []
    for service in ("svc-a", "svc-b"):
        provider = TracerProvider(
            resource=Resource.create({"service.name": service, "n": 1}),
            span_limits=SpanLimits(max_span_attributes=20, max_events=2, max_links=1),
        )
        provider.add_span_processor(SimpleSpanProcessor(mem))
        tracers = [
            provider.get_tracer("lib.one", "1.0", schema_url="https://opentelemetry.io/s/1"),
            provider.get_tracer("lib.two"),
            provider.get_tracer("lib.one", "1.0", schema_url="https://opentelemetry.io/s/1"),
        ]
        remote = SpanContext(
            0xABC,
            0xDEF,
            is_remote=True,
            trace_flags=TraceFlags(1),
            trace_state=TraceState([("vendor", "v1"), ("k", "x")]),
        )
        local = SpanContext(0x1234, 0x5678, is_remote=False)
        for i, tracer in enumerate(tracers * 2):
            kind = list(SpanKind)[i % 5]
            ctx = trace.set_span_in_context(NonRecordingSpan(remote)) if i % 2 else None
            links = [Link(local, {"l": 1}), Link(remote)] if i % 3 == 0 else []
            with tracer.start_as_current_span(
                f"op-{i}-ü", context=ctx, kind=kind, attributes=ODD_VALUES, links=links
            ) as span:
                span.add_event("ev", {"k": "v", "n": i}, timestamp=1_700_000_000_000_000_000)
                span.add_event("bare")
                span.add_event("dropped-by-limit")
                if i % 4 == 1:
                    span.set_status(Status(StatusCode.ERROR, "boom"))
                elif i % 4 == 2:
                    span.set_status(Status(StatusCode.OK))
                for extra in range(i):
                    span.set_attribute(f"extra.{extra}", extra)
                with tracer.start_as_current_span("child"):
                    pass
        out = mem.spans
    return out


def varied_logs() -> list[Any]:
    mem = MemoryLogs()
    provider = LoggerProvider(resource=Resource.create({"service.name": "svc-logs"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(mem))
    handler = LoggingHandler(logger_provider=provider)
    logger = logging.getLogger("tests.export.varied")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    tracer = TracerProvider().get_tracer("t")
    logger.debug("debug %s", "x")
    logger.info("info with extra", extra={"user.id": 7, "ok": True, "ratio": 0.25, "tags": ["a"]})
    with tracer.start_as_current_span("in-span"):
        logger.warning("inside a span ✓")
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("with traceback")
    logger.error({"structured": {"nested": [1, "two"]}, "n": None})
    logger.critical(12345)
    logger.warning("long body " + "x" * 130)  # lengths past one varint byte
    otel_logger = provider.get_logger("direct", "2.0")
    from opentelemetry._logs import LogRecord, SeverityNumber

    otel_logger.emit(LogRecord(body=None, severity_number=SeverityNumber.INFO, event_name="evt"))
    otel_logger.emit(LogRecord(body=b"raw", attributes={"k": "v"}))
    return mem.records
