"""The tracer provider: sampler, bounded baggage copy, batch export with drop accounting."""

from __future__ import annotations

from typing import Any

from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
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
    provider = TracerProvider(
        resource=resource, sampler=build_sampler(settings), shutdown_on_exit=False
    )
    provider.add_span_processor(BaggageSpanProcessor())
    provider.add_span_processor(SpanHygieneProcessor(redactor_for(settings)))
    if exporter is not None:
        # Encodes each span as it ends; the export thread only joins, compresses and posts.
        # Drops (full queue, failed export, shutdown deadline) are counted in `drops`.
        provider.add_span_processor(HyperDXBatchSpanProcessor(exporter))
    return provider
