"""A real OTLP/HTTP receiver that keeps the decoded protobuf requests, typed.

The project's :class:`~hyperdx.local.receiver.Receiver` stores ClickStack rows, where every
attribute value is a string; a differential comparison must see ``200`` and ``"200"`` as
different. So the suite mounts its own handlers for ``/v1/traces`` and ``/v1/metrics`` on the
receiver (its public ``add_route``) and keeps the decoded messages; logs go to the
receiver's normal path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hyperdx.local import wire
from hyperdx.local.receiver import DEFAULT_MAX_BODY_BYTES, Receiver
from hyperdx.local.sinks import MemorySink
from hyperdx.local.values import any_value_to_python


@dataclass
class Span:
    """One exported span, values typed as sent."""

    service: str
    scope_name: str
    scope_version: str
    schema_url: str
    trace_id: str
    span_id: str
    parent_span_id: str
    trace_state: str
    name: str
    kind: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    events: list[tuple[str, dict[str, Any]]]
    links: int
    dropped_attributes: int
    flags: int


@dataclass
class Point:
    """One exported metric data point (histogram count or sum value)."""

    service: str
    scope_name: str
    name: str
    unit: str
    description: str
    kind: str  # histogram / sum / gauge ...
    monotonic: bool | None
    temporality: int
    attributes: dict[str, Any]
    value: float  # histogram: count; sum/gauge: value
    bounds: tuple[float, ...] = ()


@dataclass
class Collected:
    spans: list[Span] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans_of(self, service: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.service == service]

    def points_of(self, service: str) -> list[Point]:
        with self.lock:
            return [p for p in self.points if p.service == service]


def _attrs(key_values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in key_values:
        value = any_value_to_python(kv.value)
        out[kv.key] = tuple(value) if isinstance(value, list) else value
    return out


def _service(resource: Any) -> str:
    return str(_attrs(resource.attributes).get("service.name", ""))


def _add_traces(collected: Collected, request: ExportTraceServiceRequest) -> None:
    spans = []
    for rs in request.resource_spans:
        service = _service(rs.resource)
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append(
                    Span(
                        service=service,
                        scope_name=ss.scope.name,
                        scope_version=ss.scope.version,
                        schema_url=ss.schema_url,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        trace_state=s.trace_state,
                        name=s.name,
                        kind=s.kind,
                        attributes=_attrs(s.attributes),
                        status_code=s.status.code,
                        status_message=s.status.message,
                        events=[(e.name, _attrs(e.attributes)) for e in s.events],
                        links=len(s.links),
                        dropped_attributes=s.dropped_attributes_count,
                        flags=s.flags,
                    )
                )
    with collected.lock:
        collected.spans.extend(spans)


def _add_metrics(collected: Collected, request: ExportMetricsServiceRequest) -> None:
    points = []
    for rm in request.resource_metrics:
        service = _service(rm.resource)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(metric, kind)
                for p in data.data_points:
                    if kind in ("histogram", "exponential_histogram", "summary"):
                        value = float(p.count)
                    else:
                        value = float(
                            p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                        )
                    points.append(
                        Point(
                            service=service,
                            scope_name=sm.scope.name,
                            name=metric.name,
                            unit=metric.unit,
                            description=metric.description,
                            kind=kind,
                            monotonic=bool(data.is_monotonic) if kind == "sum" else None,
                            temporality=int(getattr(data, "aggregation_temporality", 0)),
                            attributes=_attrs(p.attributes),
                            value=value,
                            bounds=tuple(p.explicit_bounds) if kind == "histogram" else (),
                        )
                    )
    with collected.lock:
        collected.points.extend(points)


def _handler(collected: Collected, signal_path: str) -> Any:
    signal = wire.SIGNALS[signal_path]

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        media = wire.media_type(request.headers.get("content-type"))
        data = wire.decompress(
            await request.read(),
            request.headers.get("content-encoding", ""),
            DEFAULT_MAX_BODY_BYTES,
        )
        message = wire.decode(data, media, signal.request_type)
        if signal.name == "traces":
            _add_traces(collected, message)
        else:
            _add_metrics(collected, message)
        return web.Response(status=200, body=wire.success_body(media), content_type=media)

    return handle


@contextmanager
def typed_receiver() -> Iterator[tuple[Receiver, Collected]]:
    """A receiver on an ephemeral port whose spans and metric points are kept typed."""
    collected = Collected()
    receiver = Receiver(MemorySink(), http_port=0, grpc_port=None)
    for path in ("/v1/traces", "/v1/metrics"):
        receiver.add_route("POST", path, _handler(collected, path), auth=False)
    with receiver:
        yield receiver, collected
