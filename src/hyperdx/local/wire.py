"""OTLP wire rules shared by the HTTP and gRPC listeners, free of any server framework.

Everything here mirrors the OpenTelemetry collector's OTLP receiver as ClickStack runs it
(REFERENCE.md sections 1.2-1.5): bearertokenauth with an empty scheme, the Content-Encodings
it decompresses, the 20 MiB cap (raw and decompressed), protobuf and OTLP/JSON decoding and
the ``google.rpc.Status`` error bodies.
"""

from __future__ import annotations

import base64
import hmac
import io
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hyperdx.local import rows
from hyperdx.local.admission import Admission, Overloaded
from hyperdx.local.log_block import RawAttributesRequest, log_tables
from hyperdx.local.native import Block
from hyperdx.local.sinks import Sink, SinkUnavailable, deadline_scope, takes_blocks
from hyperdx.local.span_block import RawSpansRequest, trace_tables

__all__ = [
    "JSON",
    "PROTOBUF",
    "SIGNALS",
    "Signal",
    "WireError",
    "check_authorization",
    "decode",
    "decompress",
    "ingest",
    "media_type",
    "status_response",
    "success_body",
]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# google.rpc.Code numbers used by the receiver.
INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16
_CODE_FOR_STATUS = {
    400: INVALID_ARGUMENT,
    401: UNAUTHENTICATED,
    413: RESOURCE_EXHAUSTED,
    500: INTERNAL,
    503: UNAVAILABLE,
}

TOO_LARGE = "http: request body too large"
# Once admitted, a request's rows must be going into chDB within this many seconds of its
# arrival, else it is refused (nothing stored): with one insert of at most ~0.5 s after
# that, no request is held for much more than 2 s, far below exporters' 10 s timeout.
COMMIT_START_BUDGET = 1.2

# The collector's own fallback when it cannot encode a Status for the request's media type:
# a literal (note the spaces) with status 500.
FALLBACK_STATUS_BODY = b'{"code": 13, "message": "failed to marshal error message"}'

MISSING_AUTH = "missing or empty authorization header: Authorization"
BAD_AUTH = "scheme or token does not match: "


class WireError(Exception):
    """A request rejected before storage: HTTP status plus the Status message, and for a
    retryable refusal (503) the seconds the client should wait before retrying."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Signal:
    """One OTLP signal: its name, HTTP path, request message and row mapping, plus, where
    one exists, the mapping to Native blocks a :class:`~hyperdx.local.sinks.BlockSink`
    takes (the same rows; a table's value is a Block or a list of row dicts)."""

    name: str
    path: str
    request_type: type[Message]
    to_rows: Callable[[Any], dict[str, list[dict[str, Any]]]]
    count: Callable[[Any], int]
    to_blocks: Callable[[Any], dict[str, Any]] | None = None
    # What a protobuf body is decoded into for to_blocks (the same wire format)
    block_request_type: type[Message] | None = None


def _trace_tables(request: ExportTraceServiceRequest) -> dict[str, list[dict[str, Any]]]:
    return {rows.TRACES_TABLE: rows.trace_rows(request)}


def _count_spans(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def _count_logs(request: ExportLogsServiceRequest) -> int:
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


def _count_points(request: ExportMetricsServiceRequest) -> int:
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


SIGNALS: dict[str, Signal] = {
    signal.path: signal
    for signal in (
        Signal(
            "traces",
            "/v1/traces",
            ExportTraceServiceRequest,
            _trace_tables,
            _count_spans,
            trace_tables,
            RawSpansRequest,
        ),
        Signal(
            "logs",
            "/v1/logs",
            ExportLogsServiceRequest,
            rows.log_rows_by_table,
            _count_logs,
            log_tables,
            RawAttributesRequest,
        ),
        Signal(
            "metrics", "/v1/metrics", ExportMetricsServiceRequest, rows.metric_rows, _count_points
        ),
    )
}


# --------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------


def check_authorization(value: str | None, keys: Sequence[str]) -> str | None:
    """bearertokenauth with ``scheme: ""``: the whole first header value must equal a key.

    Returns None when accepted, else the collector's error message. The message for a wrong
    value echoes it, as the collector does; callers must not log it.
    """
    if not value:
        return MISSING_AUTH
    sent = value.encode("utf-8", "surrogateescape")
    for key in keys:
        if hmac.compare_digest(sent, key.encode("utf-8", "surrogateescape")):
            return None
    return BAD_AUTH + value


# --------------------------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------------------------


def media_type(content_type: str | None) -> str:
    """``Application/JSON; charset=utf-8`` -> ``application/json`` ("" when absent)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


SUPPORTED_ENCODINGS = ("", "identity", "gzip", "x-gzip", "deflate", "zlib", "zstd")


def check_encoding(content_encoding: str) -> None:
    """Reject what we cannot decompress before looking at anything else (400)."""
    if content_encoding.strip().lower() not in SUPPORTED_ENCODINGS:
        raise WireError(400, f"unsupported Content-Encoding: {content_encoding}")


def decompress(body: bytes, content_encoding: str, limit: int) -> bytes:
    """Decompress a request body, never producing more than ``limit`` bytes (zip bombs)."""
    encoding = content_encoding.strip().lower()
    try:
        if encoding in ("", "identity"):
            data = body
        elif encoding in ("gzip", "x-gzip"):
            data = _inflate(body, 16 + zlib.MAX_WBITS, limit, multi_member=True)
        elif encoding in ("deflate", "zlib"):
            # HTTP "deflate" is zlib-wrapped (RFC 9110); some clients send raw deflate.
            try:
                data = _inflate(body, zlib.MAX_WBITS, limit, multi_member=False)
            except zlib.error:
                data = _inflate(body, -zlib.MAX_WBITS, limit, multi_member=False)
        elif encoding == "zstd":
            data = _unzstd(body, limit)
        else:
            raise WireError(400, f"unsupported Content-Encoding: {content_encoding}")
    except (zlib.error, EOFError, OSError) as error:
        raise WireError(400, f"failed to decompress {encoding} body: {error}") from error
    if len(data) > limit:
        raise WireError(413, TOO_LARGE)
    return data


def _inflate(body: bytes, wbits: int, limit: int, *, multi_member: bool) -> bytes:
    out = bytearray()
    remaining = body
    while True:
        engine = zlib.decompressobj(wbits)
        out += engine.decompress(remaining, limit + 1 - len(out))
        if len(out) > limit:
            return bytes(out)
        if not engine.eof:
            if engine.unconsumed_tail:
                return bytes(out)  # only possible at the limit, handled above
            raise zlib.error("truncated compressed body")
        remaining = engine.unused_data
        if not multi_member or not remaining:
            return bytes(out)


def _unzstd(body: bytes, limit: int) -> bytes:
    import zstandard  # optional dependency of the `local` extra; imported on first use

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(body), read_across_frames=True
        )
        return reader.read(limit + 1)
    except zstandard.ZstdError as error:
        raise WireError(400, f"failed to decompress zstd body: {error}") from error


_ID_LENGTHS = {
    "traceId": 16,
    "trace_id": 16,
    "spanId": 8,
    "span_id": 8,
    "parentSpanId": 8,
    "parent_span_id": 8,
}


def request_type(signal: Signal, sink: Sink, content_type: str) -> type[Message]:
    """The message type to decode a ``signal`` request into: the signal's block-mapping
    type for a protobuf body stored by a :class:`~hyperdx.local.sinks.BlockSink`, else its
    Export*ServiceRequest."""
    if content_type == PROTOBUF and signal.block_request_type is not None and takes_blocks(sink):
        return signal.block_request_type
    return signal.request_type


def decode(body: bytes, content_type: str, request_type: type[Message]) -> Any:
    """Protobuf or OTLP/JSON bytes -> an Export*ServiceRequest; WireError(400) if malformed."""
    message = request_type()
    if content_type == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, ValueError, RecursionError) as error:
            raise WireError(400, f"failed to decode protobuf body: {error}") from error
        return message
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise WireError(400, f"failed to decode JSON body: {error}") from error
    if not isinstance(document, dict):
        raise WireError(400, "failed to decode JSON body: top level is not an object")
    _hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as error:
        raise WireError(400, f"failed to decode JSON body: {error}") from error
    return message


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP/JSON carries ids as hex; protobuf's JSON mapping expects base64 for bytes."""
    if isinstance(node, dict):
        for key, value in node.items():
            size = _ID_LENGTHS.get(key)
            if size is not None and isinstance(value, str):
                node[key] = _hex_to_base64(key, value, size)
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def _hex_to_base64(field: str, value: str, size: int) -> str:
    if value == "":
        return ""
    if len(value) != 2 * size:
        raise WireError(
            400, f"invalid length for ID: {field}={value!r}, want {2 * size} hex digits"
        )
    try:
        raw = bytes.fromhex(value)
    except ValueError as error:
        raise WireError(400, f"invalid hex in {field}={value!r}") from error
    return base64.b64encode(raw).decode("ascii")


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def success_body(content_type: str) -> bytes:
    """Empty Export*ServiceResponse with ``partial_success`` present but empty."""
    return b"\x0a\x00" if content_type == PROTOBUF else b'{"partialSuccess":{}}'


def status_response(status: int, message: str, content_type: str) -> tuple[int, str, bytes]:
    """A ``google.rpc.Status`` error body in the request's encoding.

    JSON for ``application/json`` or no Content-Type, protobuf for ``application/x-protobuf``,
    and, like the collector, a 500 with a fixed JSON body for any other media type.
    """
    code = _CODE_FOR_STATUS.get(status, INTERNAL)
    if content_type == PROTOBUF:
        body = status_pb2.Status(code=code, message=message).SerializeToString()
        return status, PROTOBUF, body
    if content_type in (JSON, ""):
        text = json.dumps({"code": code, "message": message}, separators=(",", ":"))
        return status, JSON, text.encode("utf-8")
    return 500, JSON, FALLBACK_STATUS_BODY


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------

_log = logging.getLogger("hyperdx.local.receiver")

# Mapping is pure Python (GIL-bound): more than two threads at it gain nothing and make the
# event loop wait its turn for the GIL behind all of them, which delays every answer.
_MAPPING = threading.BoundedSemaphore(2)


class SinkErrors:
    """Counts sink failures; logs the first of each exception type with its traceback."""

    def __init__(self) -> None:
        self.count = 0
        self._seen: set[type[BaseException]] = set()
        self._lock = threading.Lock()

    def report(self, what: str, error: BaseException) -> None:
        """Count one failure of ``what`` (a table or request); log it if its type is new."""
        with self._lock:
            self.count += 1
            first = type(error) not in self._seen
            self._seen.add(type(error))
        if first:
            _log.error(
                "%s failed (%s); further failures of this kind are counted, not logged",
                what,
                type(error).__name__,
                exc_info=error,
            )


def ingest(
    admission: Admission,
    sink: Sink,
    signal: Signal,
    decode: Callable[[], Any],
    errors: SinkErrors,
    since: float,
    queued: bool = False,
) -> int:
    """Decode a request that arrived at ``since`` (monotonic), admit it, then store it.

    ``decode()`` gives the Export*ServiceRequest (or raises WireError): taking a callable
    rather than the message lets the decoded request (~0.3 MB per 512 log records) be freed
    once it is mapped to rows, instead of living while the rows wait for the writer.
    Returns the items stored. A refusal is WireError 503 with a retry delay, and nothing of
    the request is stored.
    """
    try:
        admission.check_room(since, queued)  # refused anyway: skip the decode
        room = getattr(sink, "wait_for_room", None)  # a sink that journals, then stores
        if room is not None:
            if not room(since + COMMIT_START_BUDGET):
                raise Overloaded("the store's queue of answered requests is full", 1)
            # Admission then times decoding and mapping only: the wait for room is the
            # store's own backpressure, and counted in, it shrank the limit until 32
            # exporters were mostly refused by it (2026-11-30).
            since = time.monotonic()
        message = decode()
        items = signal.count(message)
        admission.admit(items, since, queued)
    except Overloaded as error:
        raise WireError(
            503, f"overloaded, retry later: {error.reason}", error.retry_after
        ) from None
    stored = False
    try:
        with _MAPPING:
            if signal.to_blocks is not None and takes_blocks(sink):
                try:
                    mapped = signal.to_blocks(message)
                except DecodeError as error:
                    # Decoded with raw attributes, a malformed KeyValue (bad UTF-8, bad
                    # wire data) is only parsed while mapping: the same 400 as at decode.
                    raise WireError(400, f"failed to decode protobuf body: {error}") from None
            else:
                mapped = signal.to_rows(message)
        del message  # the only reference: the rows are all that is kept from here on
        write_tables(sink, mapped, errors, deadline=since + COMMIT_START_BUDGET)
        stored = True
    finally:
        admission.done(items, stored, since)
    return items


def write_tables(
    sink: Sink,
    mapped: dict[str, Any],
    errors: SinkErrors,
    deadline: float | None = None,
) -> None:
    """Write every non-empty table of ``mapped`` (row dicts, or a Native block for a
    :class:`~hyperdx.local.sinks.BlockSink`) before returning.

    Sink failures become WireError 503 (SinkUnavailable: retry later) or 500 (anything else),
    so the listener answers instead of dying. ``deadline`` is handed to the sink as
    :func:`~hyperdx.local.sinks.commit_deadline`.
    """
    tables = [
        (table, table_rows)
        for table, table_rows in mapped.items()
        if (table_rows.count if isinstance(table_rows, Block) else table_rows)
    ]
    for index, (table, table_rows) in enumerate(tables):
        # Only the first table may be refused: once some rows are stored, refusing the rest
        # would make the client's retry store those twice.
        with deadline_scope(deadline if index == 0 else None):
            _write(sink, table, table_rows, errors)


def _write(sink: Sink, table: str, table_rows: Any, errors: SinkErrors) -> None:
    try:
        if isinstance(table_rows, Block):
            assert takes_blocks(sink)  # only to_blocks makes blocks, for these
            sink.write_block(table, table_rows)
        else:
            sink.write(table, table_rows)
    except SinkUnavailable as error:
        errors.report(f"storing {table} rows", error)
        raise WireError(503, f"storage unavailable, retry later: {error}", 1) from error
    except Exception as error:  # any sink bug must fail this request, not the server
        errors.report(f"storing {table} rows", error)
        raise WireError(500, f"storing {table} rows failed: {type(error).__name__}") from error
