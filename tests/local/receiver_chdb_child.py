"""Child process of test_receiver_chdb.py: a Receiver over the real chDB store receives
edge-case OTLP requests; prints the HTTP statuses and what the tables hold as one JSON line.

Usage: python receiver_chdb_child.py DATA_DIR
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.request
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from hyperdx.local.receiver import Receiver
from hyperdx.local.store import ChdbSink, Store

T = time.time_ns() // 10**9 * 10**9 + 123_456_789  # recent: older rows fall to the TTL
RESOURCE = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="edge"))])


def kv(key: str, **value: Any) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def spans() -> ExportTraceServiceRequest:
    epoch = Span(name="epoch")  # 1970: accepted, then dropped by the 30-day TTL, as ClickStack
    zero = Span(
        name="zero",
        start_time_unix_nano=T,
        events=[Span.Event(name="e")],
        links=[Span.Link()],
        attributes=[kv("nan", double_value=math.nan), kv("SampleRate", int_value=10)],
    )
    late = Span(
        name="late",
        start_time_unix_nano=2**64 - 1,
        end_time_unix_nano=2**64 - 1,
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        kind=Span.SPAN_KIND_SERVER,
        status=Status(code=Status.STATUS_CODE_ERROR),
    )
    scope = ScopeSpans(spans=[epoch, zero, late])
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=RESOURCE, scope_spans=[scope])]
    )


def logs() -> ExportLogsServiceRequest:
    records = [
        LogRecord(body=AnyValue(string_value="epoch")),
        LogRecord(
            time_unix_nano=T, body=AnyValue(string_value='{"k\\ud800": "v", "level": "WARN"}')
        ),
        LogRecord(
            time_unix_nano=T,
            body=AnyValue(string_value="replay"),
            attributes=[kv("rr-web.event", int_value=1)],
        ),
    ]
    scope = ScopeLogs(log_records=records)
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=RESOURCE, scope_logs=[scope])]
    )


def metrics() -> ExportMetricsServiceRequest:
    exemplar = m.Exemplar(time_unix_nano=T, as_double=1.0)  # no ids: stored as zeros
    gauge = m.Gauge(
        data_points=[m.NumberDataPoint(time_unix_nano=T, as_double=math.nan, exemplars=[exemplar])]
    )
    total = m.Sum(
        aggregation_temporality=m.AGGREGATION_TEMPORALITY_CUMULATIVE,
        is_monotonic=True,
        data_points=[m.NumberDataPoint(time_unix_nano=T, as_int=7)],
    )
    histogram = m.Histogram(
        aggregation_temporality=m.AGGREGATION_TEMPORALITY_DELTA,
        data_points=[
            m.HistogramDataPoint(
                time_unix_nano=T, count=3, bucket_counts=[1, 2], explicit_bounds=[1.0]
            )
        ],
    )
    buckets = m.ExponentialHistogramDataPoint.Buckets(offset=-1, bucket_counts=[1])
    exp = m.ExponentialHistogram(
        data_points=[
            m.ExponentialHistogramDataPoint(time_unix_nano=T, count=1, scale=2, positive=buckets)
        ]
    )
    quantile = m.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=1.5)
    summary = m.Summary(
        data_points=[m.SummaryDataPoint(time_unix_nano=T, count=2, quantile_values=[quantile])]
    )
    scope = m.ScopeMetrics(
        metrics=[
            m.Metric(name="g", gauge=gauge),
            m.Metric(name="s", sum=total),
            m.Metric(name="h", histogram=histogram),
            m.Metric(name="e", exponential_histogram=exp),
            m.Metric(name="q", summary=summary),
        ]
    )
    return ExportMetricsServiceRequest(
        resource_metrics=[m.ResourceMetrics(resource=RESOURCE, scope_metrics=[scope])]
    )


def post(receiver: Receiver, path: str, message: Message) -> int:
    request = urllib.request.Request(
        receiver.http_url + path,
        data=message.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        status: int = response.status
        return status


QUERIES = {
    "traces": "SELECT SpanName, toString(Timestamp) AS ts, SpanKind, StatusCode, SpanAttributes,"
    " arrayMap(x -> toString(x), `Events.Timestamp`) AS ev, `Links.TraceId` AS links,"
    " SampleRate, TraceId FROM default.otel_traces WHERE SpanName != 'epoch' ORDER BY SpanName",
    "logs": "SELECT toString(Timestamp) AS ts, SeverityText, SeverityNumber, LogAttributes"
    " FROM default.otel_logs WHERE Timestamp > '2001-01-01'",
    "sessions": "SELECT Body, LogAttributes FROM default.hyperdx_sessions",
    "gauge": "SELECT toString(Value) AS v, `Exemplars.TraceId` AS t, `Exemplars.SpanId` AS s,"
    " toUnixTimestamp(TimeUnix) AS time FROM default.otel_metrics_gauge",
    "sum": "SELECT Value, IsMonotonic, AggregationTemporality FROM default.otel_metrics_sum",
    "histogram": "SELECT Count, BucketCounts, Sum, Min FROM default.otel_metrics_histogram",
    "exp": "SELECT Scale, PositiveOffset, PositiveBucketCounts"
    " FROM default.otel_metrics_exponential_histogram",
    "summary": "SELECT `ValueAtQuantiles.Value` AS v FROM default.otel_metrics_summary",
}


def main(data_dir: str) -> None:
    store = Store.open(data_dir)
    try:
        with Receiver(ChdbSink(store), http_port=0, grpc_port=None) as receiver:
            statuses = [
                post(receiver, "/v1/traces", spans()),
                post(receiver, "/v1/logs", logs()),
                post(receiver, "/v1/metrics", metrics()),
            ]
        out: dict[str, Any] = {"statuses": statuses, "T": T}
        for name, sql in QUERIES.items():
            out[name] = store.query(sql).rows
    finally:
        store.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
