"""OpenTelemetry ``SpanProcessor`` / ``LogRecordProcessor`` over the shared :class:`Batcher`.

They accept any exporter (the user's own included): batching, drop accounting and fork
safety do not depend on the fast exporters, which only make each export cheaper.
Defaults follow the SDK's ``OTEL_BSP_*`` / ``OTEL_BLRP_*`` environment variables.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from ._batch import Batcher

_EMPTY_RESOURCE = Resource.create({})


class HyperDXBatchSpanProcessor(SpanProcessor):
    """Batching span processor: ``on_end`` is a sampled check and a deque append."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        schedule_delay_millis: float | None = None,
        max_queue_size: int | None = None,
        max_export_batch_size: int | None = None,
    ) -> None:
        self.span_exporter = exporter
        self._batcher: Batcher[ReadableSpan] = Batcher(
            "spans",
            self._export,
            schedule_delay_millis=schedule_delay_millis
            or BatchSpanProcessor._default_schedule_delay_millis(),
            max_queue_size=max_queue_size or BatchSpanProcessor._default_max_queue_size(),
            max_export_batch_size=max_export_batch_size
            or BatchSpanProcessor._default_max_export_batch_size(),
        )
        self._put = self._batcher.put

    def _export(self, batch: Sequence[ReadableSpan]) -> bool:
        return self.span_exporter.export(batch) is SpanExportResult.SUCCESS

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is not None and ctx.trace_flags.sampled:
            self._put(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batcher.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._batcher.shutdown()
        self.span_exporter.shutdown()


class HyperDXBatchLogRecordProcessor(LogRecordProcessor):
    """Batching log processor; same record hand-off as the SDK's, cheaper queueing."""

    def __init__(
        self,
        exporter: LogRecordExporter,
        *,
        schedule_delay_millis: float | None = None,
        max_queue_size: int | None = None,
        max_export_batch_size: int | None = None,
    ) -> None:
        self._exporter = exporter
        self._batcher: Batcher[ReadableLogRecord] = Batcher(
            "logs",
            self._export,
            schedule_delay_millis=schedule_delay_millis
            or BatchLogRecordProcessor._default_schedule_delay_millis(),
            max_queue_size=max_queue_size or BatchLogRecordProcessor._default_max_queue_size(),
            max_export_batch_size=max_export_batch_size
            or BatchLogRecordProcessor._default_max_export_batch_size(),
        )
        self._put = self._batcher.put

    def _export(self, batch: Sequence[ReadableLogRecord]) -> bool:
        return self._exporter.export(batch) is LogRecordExportResult.SUCCESS

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        # As the SDK's processor: a shallow copy drops the (possibly large) context reference.
        api_record: Any = copy.copy(log_record.log_record)
        api_record.context = Context()
        self._put(
            ReadableLogRecord(
                log_record=api_record,
                resource=log_record.resource or _EMPTY_RESOURCE,
                instrumentation_scope=log_record.instrumentation_scope,
                limits=log_record.limits,
            )
        )

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batcher.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._batcher.shutdown()
        self._exporter.shutdown()
