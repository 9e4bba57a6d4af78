"""OTLP/gRPC on the same Receiver: the SDK's gRPC exporters, metadata auth, bad messages."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from hyperdx.local.receiver import Receiver
from hyperdx.local.sinks import MemorySink, SinkUnavailable

from support.otlp import http_request, running_receiver

KEY = "7d1c0e9a-3b2f-4a6d-8e5c-0f1a2b3c4d5e"
RESOURCE = Resource.create({"service.name": "grpc-svc"})
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture()
def served() -> Iterator[tuple[Receiver, MemorySink]]:
    with running_receiver(api_keys=[KEY], grpc=True) as pair:
        yield pair


def _target(receiver: Receiver) -> str:
    return receiver.grpc_url.removeprefix("http://")


def test_sdk_grpc_exporters_for_all_three_signals(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    assert receiver.grpc_url.startswith("http://127.0.0.1:") and receiver.grpc_port
    headers = {"authorization": KEY}
    tracer_provider = TracerProvider(resource=RESOURCE)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=receiver.grpc_url, insecure=True, headers=headers)
        )
    )
    with tracer_provider.get_tracer("g").start_as_current_span("rpc", kind=SpanKind.SERVER) as span:
        span.set_status(StatusCode.ERROR)
        span.set_attribute("size", 1.25)
    tracer_provider.shutdown()
    [row] = sink.wait_for("otel_traces")
    assert row["TraceId"] == f"{span.get_span_context().trace_id:032x}"
    assert (row["SpanKind"], row["StatusCode"], row["ServiceName"]) == (
        "Server",
        "Error",
        "grpc-svc",
    )
    assert row["SpanAttributes"] == {"size": "1.25"}

    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(
            OTLPLogExporter(endpoint=receiver.grpc_url, insecure=True, headers=headers)
        )
    )
    logger_provider.get_logger("g").emit(body="Fatal: out of memory")
    logger_provider.shutdown()
    [log] = sink.wait_for("otel_logs")
    assert (log["Body"], log["SeverityText"], log["SeverityNumber"]) == (
        "Fatal: out of memory",
        "fatal",
        21,
    )

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter_provider.get_meter("g").create_counter("calls").add(5)
    data = reader.get_metrics_data()
    assert data is not None
    exporter = OTLPMetricExporter(endpoint=receiver.grpc_url, insecure=True, headers=headers)
    assert exporter.export(data).name == "SUCCESS"
    meter_provider.shutdown()
    [point] = sink.wait_for("otel_metrics_sum")
    assert (point["MetricName"], point["Value"], point["ServiceName"]) == ("calls", 5.0, "grpc-svc")

    grpc_requests = [r for r in receiver.requests if r.protocol == "grpc"]
    assert [(r.signal, r.status, r.items) for r in grpc_requests] == [
        ("traces", 200, 1),
        ("logs", 200, 1),
        ("metrics", 200, 1),
    ]
    assert grpc_requests[0].headers["authorization"] == KEY
    assert grpc_requests[0].path == EXPORT


def _call(receiver: Receiver, body: bytes, metadata: tuple[tuple[str, str], ...]) -> bytes:
    with grpc.insecure_channel(_target(receiver)) as channel:
        export = channel.unary_unary(EXPORT)  # raw bytes in and out
        reply: bytes = export(body, metadata=metadata, timeout=5)
        return reply


def _request_bytes(name: str) -> bytes:
    span = Span(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        name=name,
        start_time_unix_nano=time.time_ns(),
    )
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    return request.SerializeToString()


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ((), "missing or empty authorization header: Authorization"),
        ((("authorization", "nope"),), "scheme or token does not match: nope"),
        ((("authorization", f"Bearer {KEY}"),), f"scheme or token does not match: Bearer {KEY}"),
    ],
)
def test_grpc_auth_failures_are_unauthenticated(
    served: tuple[Receiver, MemorySink], metadata: tuple[tuple[str, str], ...], message: str
) -> None:
    receiver, sink = served
    with pytest.raises(grpc.RpcError) as caught:
        _call(receiver, _request_bytes("denied"), metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == message
    assert receiver.requests[-1].status == 401 and sink.tables() == {}
    assert _call(receiver, _request_bytes("ok"), (("authorization", KEY),)) == b"\x0a\x00"
    assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["ok"]


def test_grpc_garbage_message_is_invalid_argument(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    with pytest.raises(grpc.RpcError) as caught:
        _call(receiver, b"\xff\xff\xff\xff\x0f", (("authorization", KEY),))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert receiver.requests[-1].status == 400 and sink.tables() == {}
    stub = trace_service_pb2_grpc.TraceServiceStub(grpc.insecure_channel(_target(receiver)))
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(_request_bytes("stub"))
    response = stub.Export(request, metadata=(("authorization", KEY),), timeout=5)
    assert response.HasField("partial_success")
    assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["stub"]


def test_grpc_gzip_compression(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    with grpc.insecure_channel(_target(receiver), compression=grpc.Compression.Gzip) as channel:
        channel.unary_unary(EXPORT)(
            _request_bytes("zipped"), metadata=(("authorization", KEY),), timeout=5
        )
    assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["zipped"]


def test_http_and_grpc_listeners_run_side_by_side(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    reply = http_request(
        receiver,
        "/v1/traces",
        _request_bytes("via-http"),
        [("Content-Type", "application/x-protobuf"), ("authorization", KEY)],
    )
    assert reply.status == 200
    _call(receiver, _request_bytes("via-grpc"), (("authorization", KEY),))
    assert sorted(row["SpanName"] for row in sink.rows("otel_traces")) == ["via-grpc", "via-http"]


def test_listeners_can_be_turned_off_and_ports_are_reported() -> None:
    sink = MemorySink()
    with Receiver(sink, http_port=None, grpc_port=0) as grpc_only:
        assert grpc_only.http_url == "" and grpc_only.grpc_port
        _call(grpc_only, _request_bytes("g"), ())
        assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["g"]
    with Receiver(MemorySink(), http_port=0, grpc_port=None) as http_only:
        assert http_only.grpc_url == "" and http_only.http_url.endswith(str(http_only.http_port))


def test_busy_port_is_a_clear_error() -> None:
    with running_receiver() as (receiver, _):
        clash = Receiver(MemorySink(), http_port=receiver.http_port, grpc_port=None)
        with pytest.raises(OSError, match=f"OTLP/HTTP on 127.0.0.1:{receiver.http_port}"):
            clash.start()


def test_grpc_sink_failures_map_to_unavailable_and_internal() -> None:
    class FlakySink(MemorySink):
        error: Exception | None = None

        def write(self, table: str, rows: list[dict[str, object]]) -> None:
            if self.error is not None:
                raise self.error
            super().write(table, rows)

    sink = FlakySink()
    with Receiver(sink, http_port=None, grpc_port=0) as receiver:
        for error, code, status in (
            (SinkUnavailable("busy"), grpc.StatusCode.UNAVAILABLE, 503),
            (RuntimeError("broken"), grpc.StatusCode.INTERNAL, 500),
        ):
            sink.error = error
            with pytest.raises(grpc.RpcError) as caught:
                _call(receiver, _request_bytes("x"), ())
            assert caught.value.code() == code
            assert receiver.requests[-1].status == status
        sink.error = None
        assert _call(receiver, _request_bytes("fine"), ()) == b"\x0a\x00"
        assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["fine"]
