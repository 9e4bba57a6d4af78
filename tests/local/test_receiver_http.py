"""OTLP/HTTP receiver: real OpenTelemetry SDK exporters, hand-written OTLP/JSON, compression
and chunked bodies, asserting on the rows that arrive in the sink."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import zstandard
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, StatusCode

from hyperdx.local.receiver import Receiver
from hyperdx.local.sinks import MemorySink

from support.otlp import http_request, running_receiver

KEY = "3f0e2a52-8d0b-4f5e-9a43-1b2c3d4e5f60"
RESOURCE = Resource.create({"service.name": "checkout", "deployment.environment.name": "test"})
PB = ("Content-Type", "application/x-protobuf")
JS = ("Content-Type", "application/json")
AUTH = ("authorization", KEY)


@pytest.fixture()
def served() -> Iterator[tuple[Receiver, MemorySink]]:
    with running_receiver(api_keys=[KEY]) as pair:
        yield pair


def _span_bytes(name: str = "hand-made") -> bytes:
    span = Span(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        name=name,
        start_time_unix_nano=time.time_ns(),
        end_time_unix_nano=time.time_ns() + 1000,
    )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    return request.SerializeToString()


# --- the OpenTelemetry SDK's own HTTP exporters ----------------------------------------------


def test_sdk_http_span_exporter_gzip(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    exporter = OTLPSpanExporter(
        endpoint=receiver.http_url + "/v1/traces",
        headers={"authorization": KEY},
        compression=Compression.Gzip,
    )
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.http", "1.2.3")
    with tracer.start_as_current_span("upstream") as upstream:
        pass
    with tracer.start_as_current_span(
        "POST /pay",
        kind=SpanKind.SERVER,
        links=[Link(upstream.get_span_context(), {"why": "retry"})],
        attributes={
            "http.url": "http://shop/pay?x=<1>&y=2",
            "http.status_code": 500,
            "ratio": 0.1,
            "whole": 2.0,
            "retry": True,
            "ids": [3, 4],
            "names": ["a", "b"],
            "weights": [1.5, 2.0],
        },
    ) as root:
        with tracer.start_as_current_span("charge") as child:
            pass
        try:
            raise ValueError("card declined")
        except ValueError as error:
            root.record_exception(error)
        root.set_status(StatusCode.ERROR, "payment failed")
    provider.shutdown()

    rows = sink.wait_for("otel_traces", 3)
    by_name = {row["SpanName"]: row for row in rows}
    server, inner = by_name["POST /pay"], by_name["charge"]
    root_ctx, child_ctx = root.get_span_context(), child.get_span_context()
    assert server["TraceId"] == f"{root_ctx.trace_id:032x}"
    assert server["SpanId"] == f"{root_ctx.span_id:016x}"
    assert server["ParentSpanId"] == ""
    assert inner["ParentSpanId"] == server["SpanId"]
    assert inner["SpanId"] == f"{child_ctx.span_id:016x}"
    assert (server["SpanKind"], inner["SpanKind"]) == ("Server", "Internal")
    assert (server["StatusCode"], server["StatusMessage"]) == ("Error", "payment failed")
    assert inner["StatusCode"] == "Unset"
    assert server["ServiceName"] == "checkout"
    assert server["ResourceAttributes"]["deployment.environment.name"] == "test"
    assert (server["ScopeName"], server["ScopeVersion"]) == ("shop.http", "1.2.3")
    assert server["SpanAttributes"] == {
        "http.url": "http://shop/pay?x=<1>&y=2",
        "http.status_code": "500",
        "ratio": "0.1",
        "whole": "2",
        "retry": "true",
        "ids": "[3,4]",
        "names": '["a","b"]',
        "weights": "[1.5,2]",
    }
    assert server["Events.Name"] == ["exception"]
    [exception] = server["Events.Attributes"]
    assert exception["exception.type"] == "ValueError"
    assert exception["exception.message"] == "card declined"
    assert "Traceback" in exception["exception.stacktrace"]
    assert server["Links.TraceId"] == [by_name["upstream"]["TraceId"]]
    assert server["Links.SpanId"] == [by_name["upstream"]["SpanId"]]
    assert server["Links.Attributes"] == [{"why": "retry"}]
    seconds, nanos = server["Timestamp"].split(".")
    assert len(nanos) == 9 and abs(int(seconds) - time.time()) < 60
    assert server["Duration"] > inner["Duration"] > 0

    [request] = [r for r in receiver.requests if r.items == 3] or receiver.requests[-1:]
    assert request.protocol == "http/protobuf" and request.signal == "traces"
    assert request.content_encoding == "gzip" and request.status == 200
    assert request.headers["authorization"] == KEY
    assert KEY not in repr(request)


def test_sdk_http_log_exporter(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    exporter = OTLPLogExporter(
        endpoint=receiver.http_url + "/v1/logs", headers={"authorization": KEY}
    )
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("shop.logs")
    tracer_provider = TracerProvider(resource=RESOURCE)
    before = time.time_ns()
    with tracer_provider.get_tracer("t").start_as_current_span("work") as span:
        logger.emit(
            body="plain message", severity_text="WARNING", severity_number=SeverityNumber.WARN
        )
    logger.emit(body='order placed {"order_id": 42, "user": {"tier": "gold"}}')
    logger.emit(body={"event": "login", "level": "ERROR", "ctx": {"ip": "10.0.0.1"}})
    logger.emit(body="rrweb chunk", attributes={"rr-web.event": 3, "rr-web.chunk": 1})
    provider.shutdown()

    rows = sink.wait_for("otel_logs", 3)
    plain, placed, login = rows
    ctx = span.get_span_context()
    assert (plain["TraceId"], plain["SpanId"]) == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    assert plain["TraceFlags"] & 1 == 1  # sampled (the SDK may also set the random bit)
    assert (plain["SeverityText"], plain["SeverityNumber"]) == ("warning", 13)
    assert plain["ServiceName"] == "checkout" and plain["ScopeName"] == "shop.logs"
    # No timestamp given: the observed time is used, never 1970.
    assert before <= int(placed["Timestamp"].replace(".", "")) <= time.time_ns()
    assert placed["LogAttributes"] == {"order_id": "42", "user.tier": "gold"}
    assert (placed["SeverityText"], placed["SeverityNumber"], placed["TraceId"]) == ("info", 9, "")
    assert login["Body"] == '{"ctx":{"ip":"10.0.0.1"},"event":"login","level":"ERROR"}'
    assert login["LogAttributes"] == {
        "event": "login",
        "level": "ERROR",
        "ctx": '{"ip":"10.0.0.1"}',
    }
    assert (login["SeverityText"], login["SeverityNumber"]) == ("error", 17)
    [session] = sink.wait_for("hyperdx_sessions")
    assert session["Body"] == "rrweb chunk"
    assert session["LogAttributes"] == {"rr-web.event": "3", "rr-web.chunk": "1"}
    assert [r.items for r in receiver.requests_for("logs")] == [1, 1, 1, 1]


def test_sdk_http_metric_exporter(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=RESOURCE,
        metric_readers=[reader],
        views=[
            View(
                instrument_name="payload.size", aggregation=ExponentialBucketHistogramAggregation()
            )
        ],
    )
    meter = provider.get_meter("shop.metrics", "0.1")
    meter.create_counter("orders", unit="{order}", description="orders placed").add(
        3, {"tier": "gold"}
    )
    meter.create_up_down_counter("queue.depth").add(-2)
    meter.create_gauge("temperature", unit="Cel").set(21.5, {"room": "a"})
    latency = meter.create_histogram("latency", unit="ms")
    for value in (1, 7, 250):
        latency.record(value)
    size = meter.create_histogram("payload.size", unit="By")
    for value in (10, 20, 40):
        size.record(value)
    data = reader.get_metrics_data()
    assert data is not None
    exporter = OTLPMetricExporter(
        endpoint=receiver.http_url + "/v1/metrics", headers={"authorization": KEY}
    )
    assert exporter.export(data).name == "SUCCESS"
    provider.shutdown()

    sums = {row["MetricName"]: row for row in sink.wait_for("otel_metrics_sum", 2)}
    orders, depth = sums["orders"], sums["queue.depth"]
    assert (orders["Value"], orders["IsMonotonic"], orders["AggregationTemporality"]) == (
        3.0,
        True,
        2,
    )
    assert orders["Attributes"] == {"tier": "gold"}
    assert (orders["MetricUnit"], orders["MetricDescription"]) == ("{order}", "orders placed")
    assert (orders["ServiceName"], orders["ScopeName"], orders["ScopeVersion"]) == (
        "checkout",
        "shop.metrics",
        "0.1",
    )
    assert isinstance(orders["TimeUnix"], int) and abs(orders["TimeUnix"] - time.time()) < 60
    assert (depth["Value"], depth["IsMonotonic"]) == (-2.0, False)
    [gauge] = sink.rows("otel_metrics_gauge")
    assert (gauge["MetricName"], gauge["Value"], gauge["Attributes"]) == (
        "temperature",
        21.5,
        {"room": "a"},
    )
    [histogram] = sink.rows("otel_metrics_histogram")
    assert (histogram["Count"], histogram["Sum"], histogram["Min"], histogram["Max"]) == (
        3,
        258.0,
        1.0,
        250.0,
    )
    assert len(histogram["BucketCounts"]) == len(histogram["ExplicitBounds"]) + 1
    assert sum(histogram["BucketCounts"]) == 3
    [exp] = sink.rows("otel_metrics_exponential_histogram")
    assert (exp["Count"], exp["Sum"], exp["Min"], exp["Max"]) == (3, 70.0, 10.0, 40.0)
    assert sum(exp["PositiveBucketCounts"]) == 3 and exp["Scale"] <= 20
    assert receiver.requests[-1].items == 5


def test_summary_metric_by_hand(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    now = time.time_ns()
    request = ExportMetricsServiceRequest(
        resource_metrics=[
            m.ResourceMetrics(
                scope_metrics=[
                    m.ScopeMetrics(
                        metrics=[
                            m.Metric(
                                name="rtt",
                                summary=m.Summary(
                                    data_points=[
                                        m.SummaryDataPoint(
                                            time_unix_nano=now,
                                            count=2,
                                            sum=0.5,
                                            quantile_values=[
                                                m.SummaryDataPoint.ValueAtQuantile(
                                                    quantile=0.5, value=0.2
                                                )
                                            ],
                                        )
                                    ]
                                ),
                            )
                        ]
                    )
                ]
            )
        ]
    )
    reply = http_request(receiver, "/v1/metrics", request.SerializeToString(), [PB, AUTH])
    assert (reply.status, reply.body) == (200, b"\x0a\x00")
    [row] = sink.rows("otel_metrics_summary")
    assert row["ValueAtQuantiles.Quantile"] == [0.5] and row["TimeUnix"] == now // 10**9


# --- OTLP/JSON by hand -----------------------------------------------------------------------


def test_json_camel_case_hex_ids_enum_names_and_string_int64(
    served: tuple[Receiver, MemorySink],
) -> None:
    receiver, sink = served
    start = time.time_ns()
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "browser"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "EEE19B7EC3C1B173",
                                "name": "fetch",
                                "kind": "SPAN_KIND_CLIENT",
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(start + 2500),
                                "attributes": [
                                    {"key": "n", "value": {"intValue": "9007199254740993"}},
                                    {"key": "b", "value": {"bytesValue": "AQID"}},
                                ],
                                "status": {"code": "STATUS_CODE_ERROR"},
                                "links": [{"traceId": "", "spanId": ""}],
                                "futureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    reply = http_request(receiver, "/v1/traces", json.dumps(document).encode(), [JS, AUTH])
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.body == b'{"partialSuccess":{}}'
    [row] = sink.rows("otel_traces")
    assert row["TraceId"] == "5b8efff798038103d269b633813fc60c"
    assert (row["SpanId"], row["ParentSpanId"]) == ("eee19b7ec3c1b174", "eee19b7ec3c1b173")
    assert (row["SpanKind"], row["StatusCode"], row["Duration"]) == ("Client", "Error", 2500)
    assert row["SpanAttributes"] == {"n": "9007199254740993", "b": "AQID"}
    assert row["ServiceName"] == "js" and row["Links.TraceId"] == [""]
    assert receiver.requests[-1].protocol == "http/json"


def test_json_snake_case_int_enums_and_numeric_int64(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    now = time.time_ns()
    document = {
        "resource_logs": [
            {
                "scope_logs": [
                    {
                        "log_records": [
                            {
                                "time_unix_nano": now,
                                "severity_number": 17,
                                "severity_text": "Error",
                                "trace_id": "0af7651916cd43dd8448eb211c80319c",
                                "span_id": "b7ad6b7169203331",
                                "body": {"string_value": "db down"},
                                "attributes": [{"key": "retries", "value": {"int_value": 3}}],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    reply = http_request(
        receiver,
        "/v1/logs",
        json.dumps(document).encode(),
        [("Content-Type", "application/json; charset=utf-8"), AUTH],
    )
    assert (reply.status, reply.body) == (200, b'{"partialSuccess":{}}')
    [row] = sink.rows("otel_logs")
    assert row["Timestamp"] == f"{now // 10**9}.{now % 10**9:09d}"
    assert (row["TraceId"], row["SpanId"]) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )
    assert (row["SeverityText"], row["SeverityNumber"]) == ("error", 17)
    assert (row["Body"], row["LogAttributes"]) == ("db down", {"retries": "3"})


@pytest.mark.parametrize(
    ("trace_id", "why"),
    [("0af7651916cd43dd", "invalid length"), ("zz" * 16, "invalid hex")],
)
def test_json_bad_hex_id_is_400_and_stores_nothing(
    served: tuple[Receiver, MemorySink], trace_id: str, why: str
) -> None:
    receiver, sink = served
    document = {
        "resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": trace_id, "name": "x"}]}]}]
    }
    reply = http_request(receiver, "/v1/traces", json.dumps(document).encode(), [JS, AUTH])
    assert reply.status == 400 and reply.json()["code"] == 3
    assert why in reply.json()["message"] and trace_id in reply.json()["message"]
    assert sink.tables() == {}


def test_empty_request_is_success_with_nothing_stored(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    assert http_request(receiver, "/v1/logs", b"", [PB, AUTH]).body == b"\x0a\x00"
    assert http_request(receiver, "/v1/metrics", b"{}", [JS, AUTH]).status == 200
    assert sink.tables() == {} and [r.items for r in receiver.requests] == [0, 0]


# --- compression and chunked bodies ----------------------------------------------------------


def _raw_deflate(data: bytes) -> bytes:
    engine = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return engine.compress(data) + engine.flush()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
        ("zlib", zlib.compress),
        ("zstd", zstandard.ZstdCompressor().compress),
        ("identity", lambda data: data),
    ],
)
def test_compressed_bodies(
    served: tuple[Receiver, MemorySink], encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    receiver, sink = served
    body = compress(_span_bytes(encoding))
    reply = http_request(receiver, "/v1/traces", body, [PB, AUTH, ("Content-Encoding", encoding)])
    assert reply.status == 200
    assert [row["SpanName"] for row in sink.rows("otel_traces")] == [encoding]


def test_multi_member_gzip_and_multi_frame_zstd(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    data = _span_bytes("split")
    half = len(data) // 2
    twice_gzip = gzip.compress(data[:half]) + gzip.compress(data[half:])
    zstd = zstandard.ZstdCompressor()
    twice_zstd = zstd.compress(data[:half]) + zstd.compress(data[half:])
    for encoding, body in (("gzip", twice_gzip), ("zstd", twice_zstd)):
        reply = http_request(
            receiver, "/v1/traces", body, [PB, AUTH, ("Content-Encoding", encoding)]
        )
        assert reply.status == 200, reply.body
    assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["split", "split"]


def test_chunked_bodies_are_read_fully(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    data = _span_bytes("chunked-protobuf")
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    reply = http_request(receiver, "/v1/traces", headers=[PB, AUTH], chunks=chunks)
    assert (reply.status, reply.body) == (200, b"\x0a\x00")
    document = json.dumps(
        {
            "resourceLogs": [
                {"scopeLogs": [{"logRecords": [{"body": {"stringValue": "chunked json"}}]}]}
            ]
        }
    ).encode()
    gz = gzip.compress(document)
    reply = http_request(
        receiver,
        "/v1/logs",
        headers=[JS, AUTH, ("Content-Encoding", "gzip")],
        chunks=[gz[:10], gz[10:20], gz[20:]],
    )
    assert (reply.status, reply.body) == (200, b'{"partialSuccess":{}}')
    assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["chunked-protobuf"]
    assert [row["Body"] for row in sink.rows("otel_logs")] == ["chunked json"]


# --- concurrency -----------------------------------------------------------------------------


class SlowSink(MemorySink):
    """Blocks in write until released, like a store busy with a large insert."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        if any(row.get("SpanName") == "slow" for row in rows):
            self.entered.set()
            assert self.release.wait(10)
        super().write(table, rows)


def test_a_blocked_sink_does_not_block_the_event_loop() -> None:
    sink = SlowSink()
    with Receiver(sink, http_port=0, grpc_port=None) as receiver, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(http_request, receiver, "/v1/traces", _span_bytes("slow"), [PB])
        assert sink.entered.wait(5)
        started = time.monotonic()
        assert http_request(receiver, "/v1/nope", b"", [PB]).status == 404
        assert http_request(receiver, "/v1/traces", _span_bytes("fast"), [PB]).status == 200
        assert time.monotonic() - started < 1
        assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["fast"]
        assert not slow.done()  # its 200 waits for the write
        sink.release.set()
        assert slow.result(timeout=5).status == 200
        assert sorted(row["SpanName"] for row in sink.rows("otel_traces")) == ["fast", "slow"]


def test_concurrent_clients_lose_nothing() -> None:
    with running_receiver() as (receiver, sink), ThreadPoolExecutor(8) as pool:
        names = [f"span-{i}" for i in range(80)]
        replies = list(
            pool.map(lambda n: http_request(receiver, "/v1/traces", _span_bytes(n), [PB]), names)
        )
        assert {reply.status for reply in replies} == {200}
        assert sorted(row["SpanName"] for row in sink.rows("otel_traces")) == sorted(names)
        assert receiver.items_received["traces"] == 80


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        receiver = Receiver(MemorySink(), host="::1", http_port=0, grpc_port=None).start()
    except OSError as error:
        pytest.skip(f"::1 not available: {error}")
    with receiver:
        assert receiver.http_url == f"http://[::1]:{receiver.http_port}"
        exporter = OTLPSpanExporter(endpoint=receiver.http_url + "/v1/traces")
        provider = TracerProvider()
        span = provider.get_tracer("v6").start_span("over-v6")
        span.end()
        assert exporter.export([span]).name == "SUCCESS"  # type: ignore[list-item]
        assert receiver.sink.rows("otel_traces")[0]["SpanName"] == "over-v6"  # type: ignore[attr-defined]


def test_json_metrics_with_hex_exemplar_ids(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    now = time.time_ns()
    point = {
        "timeUnixNano": str(now),
        "asInt": "12",
        "exemplars": [
            {
                "timeUnixNano": str(now),
                "asDouble": 0.5,
                "traceId": "0af7651916cd43dd8448eb211c80319c",
                "spanId": "b7ad6b7169203331",
            }
        ],
    }
    document = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "hits",
                                "sum": {
                                    "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA",
                                    "isMonotonic": True,
                                    "dataPoints": [point],
                                },
                            }
                        ]
                    }
                ]
            }
        ]
    }
    reply = http_request(receiver, "/v1/metrics", json.dumps(document).encode(), [JS, AUTH])
    assert reply.status == 200
    [row] = sink.rows("otel_metrics_sum")
    assert (row["Value"], row["AggregationTemporality"], row["IsMonotonic"]) == (12.0, 1, True)
    assert row["Exemplars.TraceId"] == ["0af7651916cd43dd8448eb211c80319c"]
    assert row["Exemplars.SpanId"] == ["b7ad6b7169203331"]
    assert row["Exemplars.Value"] == [0.5] and row["TimeUnix"] == now // 10**9
