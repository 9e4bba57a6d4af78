"""Telemetry of one request, as plain data, for comparing our server path with contrib's."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

VOLATILE = {"net.peer.port", "client.port"}


class Sink:
    """A tracer provider and a meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def span_dicts(self) -> list[dict[str, Any]]:
        """Finished spans; a parent inside this set is named (span ids are random)."""
        spans = self.spans.get_finished_spans()
        names = {s.context.span_id: s.name for s in spans}
        out = []
        for span in spans:
            item = span_dict(span)
            if span.parent is not None and span.parent.span_id in names:
                item["parent"] = "span:" + names[span.parent.span_id]
            out.append(item)
        return out

    def metric_dicts(self) -> dict[str, Any]:
        return metric_dicts(self.reader.get_metrics_data())


def span_dict(span: Any) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": span.kind.name,
        "attributes": {k: v for k, v in dict(span.attributes).items() if k not in VOLATILE},
        "status": (span.status.status_code.name, span.status.description),
        "events": [
            (e.name, e.attributes.get("exception.type"), e.attributes.get("exception.message"))
            for e in span.events
        ],
        "parent": format(span.parent.span_id, "016x") if span.parent else None,
        "trace_id": format(span.context.trace_id, "032x") if span.parent else None,
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
    }


def metric_dicts(data: Any) -> dict[str, Any]:
    """{name: (unit, description, [(attributes, count-or-value)...])}."""
    out: dict[str, Any] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points = []
                for p in metric.data.data_points:
                    attrs = dict(p.attributes)
                    value = getattr(p, "count", None)
                    if value is None:
                        value = p.value
                    points.append((sorted(attrs.items()), value))
                kind = (
                    type(metric.data).__name__,
                    getattr(metric.data, "is_monotonic", None),
                    str(getattr(metric.data, "aggregation_temporality", None)),
                )
                out[metric.name] = (
                    metric.unit,
                    f"{metric.description} {kind}",
                    sorted(points, key=repr),
                )
    return out
