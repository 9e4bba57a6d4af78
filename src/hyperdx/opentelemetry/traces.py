"""The tracer provider: sampler, bounded baggage copy, batch export with drop accounting."""

from __future__ import annotations

from typing import Any

from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    ReadableSpan,
    Span,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

from hyperdx.opentelemetry.export import HyperDXBatchSpanProcessor
from hyperdx.opentelemetry.fast_span import set_str_at_start
from hyperdx.opentelemetry.hygiene import SpanHygieneProcessor, redactor_for
from hyperdx.opentelemetry.options import Settings

MAX_BAGGAGE_KEYS = 16
MAX_BAGGAGE_VALUE_LENGTH = 256


class BaggageSpanProcessor(SpanProcessor):
    """Copies baggage entries onto spans as attributes, bounded.

    Inbound baggage comes from untrusted clients, so the number of keys and the value length
    are capped (0.4.0 copied everything).
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if parent_context is not None and not parent_context:
            return  # an empty context (a request without trace headers) holds no baggage
        entries = baggage.get_all(parent_context)
        for count, (key, value) in enumerate(entries.items()):
            if count >= MAX_BAGGAGE_KEYS:
                break
            set_str_at_start(span, key, str(value)[:MAX_BAGGAGE_VALUE_LENGTH])


class HyperDXSpanProcessors(SynchronousMultiSpanProcessor):
    """The tracer provider's processor list, starting with ours (baggage, hygiene, batch).

    While the list holds only ours, each span hook is one call doing the three processors' work
    (the SDK's loop calls every processor's every hook, most of them empty), an empty parent
    context skips the baggage lookup, and :meth:`end_live` (called by ``fast_span``'s span at
    ``end``) lets the batch processor encode the ended span without a ``ReadableSpan`` copy.
    Processors added later (``add_span_processor``) make it the SDK's loop again, unchanged.
    """

    def __init__(
        self,
        baggage_copier: BaggageSpanProcessor,
        hygiene: SpanHygieneProcessor,
        batch: HyperDXBatchSpanProcessor | None,
    ) -> None:
        super().__init__()
        for processor in (baggage_copier, hygiene, batch):
            if processor is not None:
                self.add_span_processor(processor)
        self._ours = self._span_processors
        self._baggage_start = baggage_copier.on_start
        self._hygiene_start = hygiene.on_start
        self._hygiene_ending = hygiene._on_ending
        self._batch_end = batch.on_end if batch is not None else None
        self._batch_end_live = batch.on_end_live if batch is not None else None
        if batch is not None:
            batch.take_end_check(hygiene._on_ending, hygiene.end_check)
            # While the list holds only ours, a span's end goes straight to the batch
            # processor (what end_live below would call); add_span_processor undoes it.
            self.__dict__["end_live"] = batch.on_end_live

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        self.__dict__.pop("end_live", None)  # another processor: end_live's own checks again
        super().add_span_processor(span_processor)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self._span_processors is not self._ours:
            super().on_start(span, parent_context=parent_context)
            return
        if parent_context is None or parent_context:  # an empty context holds no baggage
            self._baggage_start(span, parent_context)
        self._hygiene_start(span, parent_context)

    def _on_ending(self, span: Span) -> None:
        if self._span_processors is not self._ours:
            super()._on_ending(span)
            return
        self._hygiene_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        if self._span_processors is not self._ours:
            super().on_end(span)
        elif self._batch_end is not None:
            self._batch_end(span)

    def end_live(self, span: Any) -> None:
        """``_on_ending`` and ``on_end`` for a span that has just ended (``fast_span``)."""
        if self._span_processors is not self._ours:
            super()._on_ending(span)
            super().on_end(span._readable_span())
            return
        if self._batch_end_live is None:
            self._hygiene_ending(span)
            return
        # The hygiene's end check runs where the batch processor says (take_end_check): on the
        # export thread for a queued snapshot (no other processor reads the span).
        self._batch_end_live(span)


def build_sampler(settings: Settings) -> Sampler | None:
    """None lets the SDK read OTEL_TRACES_SAMPLER(_ARG); its default is parent-based always-on.

    0.4.0's sample_rate (keep 1 in N) maps onto a parent-based ratio sampler, which never
    touches the caller's attribute dict.
    """
    rate = settings.sample_rate.value
    if rate is None or rate <= 1:
        return None
    return ParentBased(TraceIdRatioBased(1.0 / rate))


def build_tracer_provider(
    settings: Settings, resource: Resource, exporter: Any | None
) -> TracerProvider:
    # The batch processor queues a snapshot of each ended span's fields; the export thread
    # encodes them a batch at a time, joins, compresses and posts. Drops (full queue, failed
    # export, shutdown deadline) are counted in `drops`.
    processors = HyperDXSpanProcessors(
        BaggageSpanProcessor(),
        SpanHygieneProcessor(redactor_for(settings)),
        HyperDXBatchSpanProcessor(exporter) if exporter is not None else None,
    )
    return TracerProvider(
        resource=resource,
        sampler=build_sampler(settings),
        shutdown_on_exit=False,
        active_span_processor=processors,
    )
