"""OTLP/gRPC compression, inflated by the receiver rather than grpc core: compressed messages
reach the handler as sent (also from the SDK's gzip exporter), are recognised by their
header, stored, recorded with their encoding, and bounded by ``max_body_bytes`` like HTTP
bodies (a gzip bomb is a recorded RESOURCE_EXHAUSTED, a corrupt one INVALID_ARGUMENT)."""

from __future__ import annotations

import gzip
import time
import zlib

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from hyperdx.local.receiver_grpc import message_encoding

from support.otlp import running_receiver

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MIB = 1 << 20


def _spans(name: str) -> bytes:
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


def _export(port: int | None, body: bytes, compression: grpc.Compression) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{port}", compression=compression) as channel:
        reply: bytes = channel.unary_unary(EXPORT)(body, timeout=10)
        return reply


def test_message_encoding_tells_gzip_and_zlib_from_any_export_request() -> None:
    payload = _spans("x") * 20
    assert message_encoding(gzip.compress(payload)) == "gzip"
    for level in (0, 1, 6, 9):
        for wbits in (9, 12, 15):
            packer = zlib.compressobj(level, zlib.DEFLATED, wbits)
            assert message_encoding(packer.compress(payload) + packer.flush()) == "deflate"
    requests = [
        payload,
        ExportLogsServiceRequest().SerializeToString(),  # empty: b""
        ExportMetricsServiceRequest(resource_metrics=[{}]).SerializeToString(),
    ]
    assert [message_encoding(r) for r in requests] == ["", "", ""]
    # every Export request starts with field 1 (0x0a): whatever follows, never compressed
    assert {message_encoding(bytes([0x0A, second])) for second in range(256)} == {""}


@pytest.mark.parametrize(
    ("compression", "recorded"),
    [
        (grpc.Compression.Gzip, "gzip"),
        (grpc.Compression.Deflate, "deflate"),
        (grpc.Compression.NoCompression, ""),
    ],
)
def test_compressed_messages_are_stored_and_their_encoding_recorded(
    compression: grpc.Compression, recorded: str
) -> None:
    with running_receiver(grpc=True) as (receiver, sink):
        name = "compressed-" + "z" * 2000
        assert _export(receiver.grpc_port, _spans(name), compression) == b"\x0a\x00"
        assert [row["SpanName"] for row in sink.rows("otel_traces")] == [name]
        (request,) = receiver.requests_for("traces")
        assert (request.status, request.items, request.content_encoding) == (200, 1, recorded)


def test_sdk_grpc_log_exporter_with_gzip_is_inflated_here() -> None:
    with running_receiver(api_keys=["k"], grpc=True) as (receiver, sink):
        provider = LoggerProvider(resource=Resource.create({"service.name": "zipped"}))
        exporter = OTLPLogExporter(
            endpoint=receiver.grpc_url,
            insecure=True,
            headers={"authorization": "k"},
            compression=grpc.Compression.Gzip,
        )
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        logger = provider.get_logger("z")
        for index in range(300):
            logger.emit(body=f"record {index} " + "x" * 100)
        provider.shutdown()
        rows = sink.wait_for("otel_logs", 300)
        assert sorted(row["Body"] for row in rows) == sorted(
            f"record {index} " + "x" * 100 for index in range(300)
        )
        requests = receiver.requests_for("logs")
        assert requests and {r.content_encoding for r in requests} == {"gzip"}
        assert sum(r.items for r in requests) == 300


def test_gzip_bomb_is_refused_at_the_cap_and_recorded_as_413() -> None:
    with running_receiver(grpc=True, max_body_bytes=MIB) as (receiver, sink):
        bomb = _spans("bomb") + b"\x00" * (8 * MIB)  # ~8 KiB once gzipped by the channel
        with pytest.raises(grpc.RpcError) as caught:
            _export(receiver.grpc_port, bomb, grpc.Compression.Gzip)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert caught.value.details() == "http: request body too large"
        (request,) = receiver.requests_for("traces")
        assert (request.status, request.content_encoding) == (413, "gzip")
        assert sink.tables() == {}
        # the same listener goes on serving what fits
        _export(receiver.grpc_port, _spans("fits"), grpc.Compression.Gzip)
        assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["fits"]


def test_corrupt_gzip_message_is_invalid_argument() -> None:
    with running_receiver(grpc=True) as (receiver, sink):
        broken = gzip.compress(_spans("cut"))[:-12]  # truncated: no end of stream
        with pytest.raises(grpc.RpcError) as caught:
            _export(receiver.grpc_port, broken, grpc.Compression.NoCompression)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("failed to decompress gzip body")
        (request,) = receiver.requests_for("traces")
        assert request.status == 400 and sink.tables() == {}
