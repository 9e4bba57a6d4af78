"""OpenTelemetry ``SpanProcessor`` / ``LogRecordProcessor`` over the shared :class:`Batcher`.

They accept any exporter (the user's own included): batching, drop accounting and fork
safety do not depend on the fast exporters, which only make each export cheaper.
Defaults follow the SDK's ``OTEL_BSP_*`` / ``OTEL_BLRP_*`` environment variables.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
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
from opentelemetry.trace import TraceFlags

from ._batch import Batcher
from ._spans import _CONTEXT_IS_TUPLE, EndCheck, snapshot
from .exporters import HyperDXLogExporter, HyperDXSpanExporter

_EMPTY_RESOURCE = Resource.create({})
_SAMPLED = TraceFlags.SAMPLED


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
        # With our exporter, an ended span is queued as a snapshot of its fields (one tuple,
        # not the span's ~10 GC-tracked objects) and encoded by the export thread, in slices
        # (short GIL holds); a span with events or links is encoded at hand-off.
        self._encode = (
            exporter.encode_item
            if isinstance(exporter, HyperDXSpanExporter) and exporter._fast
            else None
        )
        # Snapshots are queued only for an exporter that encodes them (a subclass may not).
        self._defer = (
            self._encode is not None and getattr(exporter, "encode_deferred", None) is not None
        )
        self._batcher: Batcher[Any] = Batcher(
            "spans",
            self._export,
            on_fork=getattr(exporter, "_after_fork", None),
            schedule_delay_millis=schedule_delay_millis
            or BatchSpanProcessor._default_schedule_delay_millis(),
            max_queue_size=max_queue_size or BatchSpanProcessor._default_max_queue_size(),
            max_export_batch_size=max_export_batch_size
            or BatchSpanProcessor._default_max_export_batch_size(),
        )
        self._put = self._batcher.put
        self._exporter = exporter  # the name the distro's fork handling looks for

    def _at_fork_reinit(self) -> None:
        """For servers whose forks skip Python's at-fork hooks (uWSGI without lazy-apps)."""
        self._batcher.after_fork()

    def _export(self, batch: Sequence[Any]) -> bool:
        if self._encode is not None:
            return self.span_exporter.export_encoded(batch)  # type: ignore[attr-defined]
        return self.span_exporter.export(batch) is SpanExportResult.SUCCESS

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is None or not ctx.trace_flags.sampled:
            return
        encode = self._encode
        if encode is None:
            self._put(span)
            return
        try:
            item = (span.resource, span.instrumentation_scope or None, encode(span))
        except Exception as error:  # noqa: BLE001 - never raise into the application
            self._batcher.unencodable(error)
            return
        self._put(item)

    # Set by the composite holding this processor (``traces.HyperDXSpanProcessors``), which
    # calls on_end_live only while it holds only ours: the processors' ``_on_ending`` and the
    # same check for a queued snapshot (``hygiene.SpanHygieneProcessor.end_check``).
    _ending: Callable[[Any], None] | None = None
    _check: EndCheck | None = None

    def take_end_check(self, ending: Callable[[Any], None], check: EndCheck) -> None:
        """Run ``ending`` for the spans :meth:`on_end_live` receives: as ``check`` on the export
        thread for a span queued as a snapshot, else here before it is encoded."""
        self._ending, self._check = ending, check

    def on_end_live(self, span: Any) -> None:
        """:meth:`on_end` for an ended SDK span itself (no ``ReadableSpan`` copy): its fields
        are read directly, they are the objects the copy would hold."""
        ending = self._ending
        encode = self._encode
        if encode is None:
            if ending is not None:
                ending(span)
            self.on_end(span._readable_span())
            return
        ctx = span._context
        flags = ctx[3] if _CONTEXT_IS_TUPLE else ctx.trace_flags
        if not flags & _SAMPLED:  # TraceFlags.sampled, without the two property calls
            if ending is not None:
                ending(span)
            return
        fields = snapshot(span, self._check) if self._defer else None
        if fields is not None:
            # Encoded by the export thread (export_encoded), a batch at a time: fewer
            # instructions on the request thread, and less worker CPU per request under
            # Gunicorn (BENCHMARKS.md, "Request path, sixth round").
            self._put(fields)
            return
        if ending is not None:
            ending(span)
        try:
            item = (span._resource, span._instrumentation_scope or None, encode(span))
        except Exception as error:  # noqa: BLE001 - never raise into the application
            self._batcher.unencodable(error)
            return
        self._put(item)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batcher.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30000) -> None:
        """Flush what is queued within ``timeout_millis``, then shut the exporter down;
        whatever could not be sent in time is counted as dropped."""
        self._batcher.shutdown(timeout_millis)
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
        self._encode = (
            exporter.encode_item
            if isinstance(exporter, HyperDXLogExporter) and exporter._fast
            else None
        )
        self._batcher: Batcher[Any] = Batcher(
            "logs",
            self._export,
            on_fork=getattr(exporter, "_after_fork", None),
            schedule_delay_millis=schedule_delay_millis
            or BatchLogRecordProcessor._default_schedule_delay_millis(),
            max_queue_size=max_queue_size or BatchLogRecordProcessor._default_max_queue_size(),
            max_export_batch_size=max_export_batch_size
            or BatchLogRecordProcessor._default_max_export_batch_size(),
        )
        self._put = self._batcher.put

    def _at_fork_reinit(self) -> None:
        """For servers whose forks skip Python's at-fork hooks (uWSGI without lazy-apps)."""
        self._batcher.after_fork()

    def _export(self, batch: Sequence[Any]) -> bool:
        if self._encode is not None:
            return self._exporter.export_encoded(batch)  # type: ignore[attr-defined]
        return self._exporter.export(batch) is LogRecordExportResult.SUCCESS

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        encode = self._encode
        if encode is not None:
            # Encoded now (a snapshot, as the SDK's copy is), so no copy and no wrapper.
            try:
                item = (
                    log_record.resource or _EMPTY_RESOURCE,
                    log_record.instrumentation_scope or None,
                    encode(log_record),
                )
            except Exception as error:  # noqa: BLE001 - never raise into the application
                self._batcher.unencodable(error)
                return
            self._put(item)
            return
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

    def shutdown(self, timeout_millis: float = 30000) -> None:
        """As :meth:`HyperDXBatchSpanProcessor.shutdown`."""
        self._batcher.shutdown(timeout_millis)
        self._exporter.shutdown()
