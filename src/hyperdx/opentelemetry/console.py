"""The readable DEBUG=true console view (B4): a line per log, an indented tree per trace.

These are ordinary exporters behind batch processors, so printing happens on the export
thread, never in the request path. They print names, durations, statuses and log bodies, never
headers or exporter settings, so no API key or authorization value can appear.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import IO, Any

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from hyperdx.opentelemetry.temporality import DELTA

_KEY_ATTRIBUTES = (
    "http.request.method",
    "http.method",
    "http.route",
    "url.full",
    "http.url",
    "http.target",
    "http.response.status_code",
    "http.status_code",
    "db.system",
    "messaging.system",
)
_write_lock = threading.Lock()


def _out(stream: IO[str] | None, text: str) -> None:
    with _write_lock, contextlib.suppress(OSError, ValueError):
        (stream or sys.stderr).write(text + "\n")


def _clock(ns: int | None) -> str:
    if not ns:
        return "--:--:--.---"
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def format_span_tree(spans: Sequence[ReadableSpan]) -> list[str]:
    """Lines for one batch: spans grouped by trace, children indented under parents."""
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        if span.context is not None:
            by_trace.setdefault(span.context.trace_id, []).append(span)
    lines: list[str] = []
    for trace_id, members in by_trace.items():
        ids = {s.context.span_id for s in members if s.context is not None}
        children: dict[int | None, list[ReadableSpan]] = {}
        for s in members:
            parent = s.parent.span_id if s.parent is not None else None
            children.setdefault(parent if parent in ids else None, []).append(s)
        service = members[0].resource.attributes.get("service.name", "")
        lines.append(f"trace {trace_id:032x} ({service})")

        _walk(children, None, 1, lines)
    return lines


def _walk(
    children: dict[int | None, list[ReadableSpan]], parent: int | None, depth: int, lines: list[str]
) -> None:
    for span in sorted(children.get(parent, []), key=lambda x: x.start_time or 0):
        lines.append("  " * depth + _span_line(span))
        if span.context is not None:
            _walk(children, span.context.span_id, depth + 1, lines)


def _span_line(span: ReadableSpan) -> str:
    duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    kind = span.kind.name.lower()
    error = " ERROR" if span.status.status_code is StatusCode.ERROR else ""
    attrs = span.attributes or {}
    shown = " ".join(f"{k}={attrs[k]!s}" for k in _KEY_ATTRIBUTES if k in attrs)
    return f"{span.name} [{kind}] {duration:.1f} ms{error}" + (f"  {shown}" if shown else "")


class ConsoleSpanExporter(SpanExporter):
    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        _out(self._stream, "\n".join(format_span_tree(spans)))
        return SpanExportResult.SUCCESS


class ConsoleLogExporter(LogRecordExporter):
    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        lines = []
        for item in batch:
            record = getattr(item, "log_record", item)
            level = (record.severity_text or "").upper() or "-"
            ids = ""
            if record.trace_id:
                ids = f" trace={record.trace_id:032x} span={record.span_id:016x}"
            lines.append(f"{_clock(record.timestamp)} {level:<7} {str(record.body)}{ids}")
        _out(self._stream, "\n".join(lines))
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        pass


class ConsoleMetricExporter(MetricExporter):
    """One summary line per metric and export interval."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(preferred_temporality=DELTA)
        self._stream = stream

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        lines = []
        for rm in metrics_data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points = list(metric.data.data_points)
                    values = [getattr(p, "value", None) for p in points]
                    if all(v is not None for v in values):
                        summary = f"total={sum(values)}"  # type: ignore[arg-type]
                    else:
                        count = sum(getattr(p, "count", 0) for p in points)
                        total = sum(getattr(p, "sum", 0) for p in points)
                        summary = f"count={count} sum={total:.3f}"
                    temporality = getattr(metric.data, "aggregation_temporality", None)
                    delta = " (delta)" if temporality is AggregationTemporality.DELTA else ""
                    lines.append(
                        f"metric {metric.name}: {summary} over {len(points)} series{delta}"
                    )
        if lines:
            _out(self._stream, "\n".join(lines))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass
