"""The fast export path: OpenTelemetry processors and OTLP/HTTP exporters that cost less.

Everything here stays an SDK ``SpanProcessor`` / ``SpanExporter`` / ``LogRecordProcessor`` /
``LogRecordExporter``, so users' own processors and exporters keep working beside it.

- :func:`make_span_processor` / :func:`make_log_processor`: what the distro wires in.
- :class:`HyperDXSpanExporter` / :class:`HyperDXLogExporter`: the stock OTLP/HTTP exporters
  with a byte-level encoder (identical bytes on the wire), encoding in GIL-friendly slices.
- :func:`dropped`: items that were not delivered, by signal and reason (never silent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._batch import counts
from .exporters import HyperDXLogExporter, HyperDXSpanExporter
from .processors import HyperDXBatchLogRecordProcessor, HyperDXBatchSpanProcessor

__all__ = [
    "HyperDXBatchLogRecordProcessor",
    "HyperDXBatchSpanProcessor",
    "HyperDXLogExporter",
    "HyperDXSpanExporter",
    "dropped",
    "make_log_processor",
    "make_span_processor",
]


def dropped() -> dict[str, int]:
    """Items not delivered since start, e.g. ``{"spans_queue_full": 0, "spans_export_failed":
    0, "spans_after_shutdown": 0, "spans_rejected": 0, "spans_too_large": 0,
    "logs_queue_full": 0, ...}`` (keys appear once a processor for that signal exists;
    ``rejected``: the collector's partial success, ``too_large``: 413 for a single item)."""
    return counts()


def make_span_processor(
    endpoint: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    compression: Any = None,
    timeout: float | None = None,
    schedule_delay_millis: float | None = None,
    max_queue_size: int | None = None,
    max_export_batch_size: int | None = None,
    **exporter_kwargs: Any,
) -> HyperDXBatchSpanProcessor:
    """A batch span processor over :class:`HyperDXSpanExporter`.

    ``endpoint`` is the full traces URL (``.../v1/traces``); ``None`` means the SDK's
    ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` resolution. Other arguments as
    ``OTLPSpanExporter`` / ``BatchSpanProcessor``.
    """
    exporter = HyperDXSpanExporter(
        endpoint=endpoint,
        headers=headers,
        compression=compression,
        timeout=timeout,
        **exporter_kwargs,
    )
    return HyperDXBatchSpanProcessor(
        exporter,
        schedule_delay_millis=schedule_delay_millis,
        max_queue_size=max_queue_size,
        max_export_batch_size=max_export_batch_size,
    )


def make_log_processor(
    endpoint: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    compression: Any = None,
    timeout: float | None = None,
    schedule_delay_millis: float | None = None,
    max_queue_size: int | None = None,
    max_export_batch_size: int | None = None,
    **exporter_kwargs: Any,
) -> HyperDXBatchLogRecordProcessor:
    """A batch log-record processor over :class:`HyperDXLogExporter` (``.../v1/logs``)."""
    exporter = HyperDXLogExporter(
        endpoint=endpoint,
        headers=headers,
        compression=compression,
        timeout=timeout,
        **exporter_kwargs,
    )
    return HyperDXBatchLogRecordProcessor(
        exporter,
        schedule_delay_millis=schedule_delay_millis,
        max_queue_size=max_queue_size,
        max_export_batch_size=max_export_batch_size,
    )
