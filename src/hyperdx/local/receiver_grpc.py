"""OTLP/gRPC listener (grpcio) for the three collector services.

The methods are registered under the service names of opentelemetry-proto's collector
descriptors, but take the raw request bytes, so that authentication happens before decoding
and an undecodable message is answered INVALID_ARGUMENT (and recorded) like the collector
does, instead of grpcio's own generic error.

grpc core's own message decompression is turned off: it cost ~80 us more server CPU per
512-record gzip message than Python's zlib (BENCHMARKS.md, eighth round), and it refused an
over-size message before the handler, unrecorded. The handler gets a compressed message as
sent (grpcio does not pass ``grpc-encoding`` on), recognises gzip and zlib by their headers,
which a protobuf Export request cannot start with, and inflates them with the HTTP
listener's bounded :func:`~hyperdx.local.wire.decompress` (RESOURCE_EXHAUSTED and a recorded
413 beyond ``max_body_bytes``, INVALID_ARGUMENT when corrupt).

grpcio's thread-per-call server is kept on purpose: its asyncio server, fewer workers,
registered methods and the channel options tried were no cheaper (same BENCHMARKS section).

Overload is answered ``UNAVAILABLE`` with a ``google.rpc.RetryInfo`` delay in the trailing
metadata (which the OpenTelemetry exporters honour); calls beyond ``max_concurrent`` in flight
get grpcio's immediate ``RESOURCE_EXHAUSTED``, also retryable, so none queue unboundedly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from hyperdx.local import wire
from hyperdx.local.admission import Admission, Overloaded
from hyperdx.local.sinks import Sink

__all__ = ["GrpcListener", "HTTP_STATUS_FOR_GRPC", "message_encoding"]

Record = Callable[..., None]

_SERVICES = {
    "traces": trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,
    "logs": logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name,
    "metrics": metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name,
}
_GRPC_FOR_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}
# ReceivedRequest.status for gRPC is the HTTP equivalent of the gRPC code sent back.
HTTP_STATUS_FOR_GRPC = {code: status for status, code in _GRPC_FOR_HTTP.items()}
_EMPTY_RESPONSE = b"\x0a\x00"  # Export*ServiceResponse with an empty partial_success
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
_GZIP_MAGIC = b"\x1f\x8b"


def message_encoding(message: bytes) -> str:
    """``gzip``, ``deflate`` (zlib-wrapped, gRPC's "deflate") or ``""`` for a message as
    received with grpc core's decompression off.

    A gzip member starts 1f 8b, and a protobuf message cannot (0x1f is field 3 with the
    undefined wire type 7). A zlib header is CM 8, a window of at most 32 KiB and a check
    that makes the first two bytes a multiple of 31; an Export request starts with field 1
    (0x0a), which is not such a header.
    """
    if message[:2] == _GZIP_MAGIC:
        return "gzip"
    if len(message) >= 2:
        first, second = message[0], message[1]
        if first & 0x0F == 8 and first >> 4 <= 7 and ((first << 8) | second) % 31 == 0:
            return "deflate"
    return ""


class GrpcListener:
    """A grpcio server answering Export on the trace, logs and metrics services."""

    def __init__(
        self,
        *,
        sink: Sink,
        api_keys: Sequence[str] | None,
        max_body_bytes: int,
        record: Record,
        errors: wire.SinkErrors,
        admission: Admission,
        workers: int = 16,
        max_concurrent: int = 48,
    ) -> None:
        self._sink = sink
        self._admission = admission
        self._keys = None if api_keys is None else list(api_keys)
        self._record = record
        self._errors = errors
        self._limit = max_body_bytes
        options = [
            ("grpc.max_receive_message_length", max_body_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.per_message_decompression", 0),  # inflated here, bounded: see above
        ]
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hyperdx-grpc"),
            options=options,
            maximum_concurrent_rpcs=max_concurrent,
        )
        signals = {signal.name: signal for signal in wire.SIGNALS.values()}
        for name, service in _SERVICES.items():
            handler = grpc.unary_unary_rpc_method_handler(self._exporter(signals[name], service))
            self._server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, {"Export": handler}),)
            )

    def bind(self, host: str, port: int) -> int:
        """Listen on host:port (0 = ephemeral); returns the bound port."""
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = self._server.add_insecure_port(address)
        except RuntimeError as error:
            raise OSError(f"cannot listen for OTLP/gRPC on {address}: {error}") from error
        if bound == 0:
            raise OSError(f"cannot listen for OTLP/gRPC on {address}")
        return bound

    def start(self) -> None:
        self._server.start()

    def stop(self, grace: float = 1.0) -> None:
        self._server.stop(grace).wait(grace + 1.0)

    def _exporter(self, signal: wire.Signal, service: str) -> Callable[[bytes, Any], bytes]:
        path = f"/{service}/Export"

        def export(raw: bytes, context: grpc.ServicerContext) -> bytes:
            metadata: dict[str, str] = {}
            for key, value in context.invocation_metadata():
                if isinstance(value, str):
                    metadata.setdefault(key.lower(), value)

            encoding = message_encoding(raw)

            def reply(status: int, message: str = "", items: int = 0) -> None:
                self._record(
                    protocol="grpc",
                    signal=signal.name,
                    path=path,
                    headers=metadata,
                    content_encoding=encoding,
                    status=status,
                    items=items,
                    message=message,
                )

            if self._keys is not None:
                problem = wire.check_authorization(metadata.get("authorization"), self._keys)
                if problem is not None:
                    recorded = (
                        problem if problem == wire.MISSING_AUTH else wire.BAD_AUTH + "<redacted>"
                    )
                    reply(401, recorded)
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)
            failure: tuple[int, str, int | None] | None = None
            since = time.monotonic()
            items = 0
            try:
                self._admission.reserve_bytes(len(raw))
            except Overloaded as refusal:
                failure = (503, f"overloaded, retry later: {refusal.reason}", refusal.retry_after)
            else:
                try:
                    kind = wire.request_type(signal, self._sink, wire.PROTOBUF)

                    def decode() -> Any:
                        data = wire.decompress(raw, encoding, self._limit)
                        return wire.decode(data, wire.PROTOBUF, kind)  # data freed on return

                    items = wire.ingest(
                        self._admission, self._sink, signal, decode, self._errors, since
                    )
                except wire.WireError as error:
                    failure = (error.status, error.message, error.retry_after)
                except Exception as error:  # a mapping bug fails this call, not the server
                    self._errors.report(f"{signal.name} request", error)
                    failure = (500, f"internal error: {type(error).__name__}", None)
                finally:
                    self._admission.release_bytes(len(raw))
            if failure is not None:
                status, text, retry_after = failure
                reply(status, text)
                if retry_after is not None:
                    context.set_trailing_metadata(((RETRY_INFO_KEY, _retry_info(retry_after)),))
                context.abort(_GRPC_FOR_HTTP.get(status, grpc.StatusCode.INTERNAL), text)
            reply(200, items=items)
            return _EMPTY_RESPONSE

        return export


def _retry_info(seconds: int) -> bytes:
    """RetryInfo for ``seconds`` with +-25% jitter, so refused exporters do not all come
    back in the same instant (gRPC delays, unlike Retry-After, can be fractional)."""
    delay = seconds * random.uniform(0.75, 1.25)
    whole = int(delay)
    duration = Duration(seconds=whole, nanos=int((delay - whole) * 1e9))
    return RetryInfo(retry_delay=duration).SerializeToString()
