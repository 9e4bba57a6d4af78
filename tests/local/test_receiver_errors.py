"""Every way a request can be refused, with the collector's exact status and body, nothing
stored, and the receiver still serving afterwards (REFERENCE.md 1.2-1.5)."""

from __future__ import annotations

import gzip
import json
import socket
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.trace import TracerProvider

from hyperdx.local import rows
from hyperdx.local.receiver import Receiver
from hyperdx.local.sinks import MemorySink, SinkUnavailable

from support.otlp import HttpReply, http_request, running_receiver

KEY = "3f0e2a52-8d0b-4f5e-9a43-1b2c3d4e5f60"
PB = ("Content-Type", "application/x-protobuf")
JS = ("Content-Type", "application/json")
AUTH = ("authorization", KEY)
MISSING = "missing or empty authorization header: Authorization"
LIMIT = 64 * 1024


def _span_bytes(name: str = "ok", size: int = 0) -> bytes:
    span = Span(
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        name=name,
        start_time_unix_nano=time.time_ns(),
        attributes=[],
    )
    if size:
        span.trace_state = "x" * size
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    return request.SerializeToString()


@pytest.fixture()
def served() -> Iterator[tuple[Receiver, MemorySink]]:
    with running_receiver(api_keys=[KEY, "second-key"], max_body_bytes=LIMIT) as pair:
        yield pair


def _still_serving(receiver: Receiver, sink: MemorySink) -> None:
    """After any refusal: nothing was stored, and a good request still succeeds."""
    assert sink.tables() == {}
    reply = http_request(receiver, "/v1/traces", _span_bytes("after"), [PB, AUTH])
    assert (reply.status, reply.body) == (200, b"\x0a\x00")
    assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["after"]


def _json_status(reply: HttpReply) -> Any:
    assert reply.headers["content-type"] == "application/json"
    return reply.json()


# --- authentication --------------------------------------------------------------------------


def test_missing_key_protobuf_status(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    reply = http_request(receiver, "/v1/traces", _span_bytes(), [PB])
    assert reply.status == 401
    assert reply.headers["content-type"] == "application/x-protobuf"
    status = status_pb2.Status.FromString(reply.body)
    assert (status.code, status.message) == (16, MISSING)
    _still_serving(receiver, sink)


@pytest.mark.parametrize(
    "content_type", [[JS], [("Content-Type", "application/json; charset=utf-8")], []]
)
def test_missing_key_json_status_also_without_content_type(
    served: tuple[Receiver, MemorySink], content_type: list[tuple[str, str]]
) -> None:
    receiver, sink = served
    reply = http_request(receiver, "/v1/logs", b"{}", content_type)
    assert reply.status == 401
    assert (
        reply.body
        == b'{"code":16,"message":"missing or empty authorization header: Authorization"}'
    )
    assert _json_status(reply) == {"code": 16, "message": MISSING}
    _still_serving(receiver, sink)


def test_missing_key_with_other_content_type_is_500_fallback(
    served: tuple[Receiver, MemorySink],
) -> None:
    receiver, sink = served
    reply = http_request(receiver, "/v1/traces", b"hello", [("Content-Type", "text/plain")])
    assert reply.status == 500
    assert reply.body == b'{"code": 13, "message": "failed to marshal error message"}'
    _still_serving(receiver, sink)


@pytest.mark.parametrize(
    "sent",
    ["wrong", f"Bearer {KEY}", f"{KEY}0", KEY.upper(), ""],
)
def test_wrong_key_is_401_echoing_the_sent_value(
    served: tuple[Receiver, MemorySink], sent: str
) -> None:
    receiver, sink = served
    reply = http_request(receiver, "/v1/traces", _span_bytes(), [JS, ("Authorization", sent)])
    assert reply.status == 401
    expected = MISSING if sent == "" else f"scheme or token does not match: {sent.strip()}"
    assert _json_status(reply) == {"code": 16, "message": expected}
    record = receiver.requests[-1]
    assert record.status == 401 and record.items == 0
    if sent.strip():
        assert sent.strip() not in record.message and "<redacted>" in record.message
    _still_serving(receiver, sink)


def test_only_the_first_authorization_value_counts(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    reply = http_request(
        receiver, "/v1/traces", _span_bytes(), [PB, ("authorization", "nope"), AUTH]
    )
    assert reply.status == 401
    reply = http_request(
        receiver, "/v1/traces", _span_bytes("second"), [PB, ("authorization", "second-key")]
    )
    assert reply.status == 200
    assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["second"]


def test_sdk_exporter_with_bearer_key_fails_and_nothing_is_stored(
    served: tuple[Receiver, MemorySink],
) -> None:
    receiver, sink = served
    exporter = OTLPSpanExporter(
        endpoint=receiver.http_url + "/v1/traces", headers={"authorization": f"Bearer {KEY}"}
    )
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("never")
    span.end()
    assert exporter.export([span]).name == "FAILURE"  # type: ignore[list-item]
    provider.shutdown()
    assert receiver.requests[-1].status == 401
    _still_serving(receiver, sink)


def test_auth_is_checked_before_path_method_type_and_encoding(
    served: tuple[Receiver, MemorySink],
) -> None:
    receiver, sink = served
    for path, method, headers in (
        ("/v1/nope", "POST", [JS]),
        ("/v1/traces", "GET", [JS]),
        ("/v1/traces", "POST", [("Content-Type", "application/json"), ("Content-Encoding", "br")]),
    ):
        reply = http_request(receiver, path, b"{}", headers, method=method)
        assert reply.status == 401, (path, method)
    _still_serving(receiver, sink)


def test_cors_preflight_is_answered_before_auth(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    reply = http_request(
        receiver,
        "/v1/traces",
        headers=[
            ("Origin", "http://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type,authorization"),
        ],
        method="OPTIONS",
    )
    assert reply.status == 204
    assert reply.headers["access-control-allow-origin"] == "http://app.example"
    assert reply.headers["access-control-allow-methods"] == "POST"
    assert reply.headers["access-control-allow-headers"] == "content-type,authorization"
    reply = http_request(
        receiver, "/v1/traces", _span_bytes("cors"), [PB, AUTH, ("Origin", "http://app.example")]
    )
    assert reply.status == 200
    assert reply.headers["access-control-allow-origin"] == "http://app.example"
    assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["cors"]


# --- encoding, path, method, media type ------------------------------------------------------


def test_unsupported_content_encoding_is_400_before_the_path(
    served: tuple[Receiver, MemorySink],
) -> None:
    receiver, sink = served
    for path in ("/v1/traces", "/not/a/path"):
        reply = http_request(receiver, path, b"{}", [JS, AUTH, ("Content-Encoding", "br")])
        assert reply.status == 400
        assert _json_status(reply) == {"code": 3, "message": "unsupported Content-Encoding: br"}
    _still_serving(receiver, sink)


@pytest.mark.parametrize("path", ["/v1/profiles", "/v1/traces/", "/", "/v1/development/profiles"])
def test_unknown_path_is_404(served: tuple[Receiver, MemorySink], path: str) -> None:
    receiver, sink = served
    reply = http_request(receiver, path, _span_bytes(), [PB, AUTH])
    assert (reply.status, reply.body) == (404, b"404 page not found\n")
    assert reply.headers["content-type"].startswith("text/plain")
    _still_serving(receiver, sink)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405(served: tuple[Receiver, MemorySink], method: str) -> None:
    receiver, sink = served
    reply = http_request(receiver, "/v1/logs", b"", [PB, AUTH], method=method)
    assert (reply.status, reply.body) == (405, b"405 method not allowed, supported: [POST]")
    assert reply.headers["content-type"] == "text/plain"
    _still_serving(receiver, sink)


@pytest.mark.parametrize(
    "headers", [[("Content-Type", "text/plain")], [("Content-Type", "application/protobuf")], []]
)
def test_unsupported_media_type_is_415(
    served: tuple[Receiver, MemorySink], headers: list[tuple[str, str]]
) -> None:
    receiver, sink = served
    reply = http_request(receiver, "/v1/metrics", _span_bytes(), [*headers, AUTH])
    assert reply.status == 415
    assert reply.body == (
        b"415 unsupported media type, supported: [application/json, application/x-protobuf]"
    )
    _still_serving(receiver, sink)


# --- bodies ----------------------------------------------------------------------------------


def test_garbage_protobuf_is_400_invalid_argument(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    reply = http_request(receiver, "/v1/traces", b"\xff\xff\xff\xff\x0f", [PB, AUTH])
    assert reply.status == 400
    status = status_pb2.Status.FromString(reply.body)
    assert status.code == 3 and "protobuf" in status.message
    assert receiver.requests[-1].status == 400
    _still_serving(receiver, sink)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1,2]",
        b'{"resourceSpans": 5}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
        b"\xff\xfe",
    ],
)
def test_undecodable_json_is_400(served: tuple[Receiver, MemorySink], body: bytes) -> None:
    receiver, sink = served
    reply = http_request(receiver, "/v1/traces", body, [JS, AUTH])
    assert reply.status == 400
    assert _json_status(reply)["code"] == 3
    _still_serving(receiver, sink)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd"])
def test_corrupt_compressed_body_is_400(served: tuple[Receiver, MemorySink], encoding: str) -> None:
    receiver, sink = served
    corrupt = (
        gzip.compress(_span_bytes())[:-6] if encoding == "gzip" else b"\x00\x01\x02 not compressed"
    )
    reply = http_request(
        receiver, "/v1/traces", corrupt, [PB, AUTH, ("Content-Encoding", encoding)]
    )
    assert reply.status == 400
    assert status_pb2.Status.FromString(reply.body).code == 3
    _still_serving(receiver, sink)


def test_body_size_limit_raw_chunked_and_decompressed(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    padding = LIMIT - 100
    while len(at_limit := _span_bytes("fits", size=padding)) < LIMIT:
        padding += 1
    assert len(at_limit) == LIMIT
    over = _span_bytes("too big", size=LIMIT)
    too_large = {"code": 8, "message": "http: request body too large"}  # RESOURCE_EXHAUSTED

    reply = http_request(receiver, "/v1/traces", over, [JS, AUTH])
    assert (reply.status, _json_status(reply)) == (413, too_large)
    reply = http_request(
        receiver, "/v1/traces", headers=[JS, AUTH], chunks=[over[:LIMIT], over[LIMIT:]]
    )
    assert (reply.status, _json_status(reply)) == (413, too_large)
    bomb = zlib.compress(b"\x00" * (LIMIT * 50))  # a few hundred bytes on the wire
    reply = http_request(receiver, "/v1/traces", bomb, [JS, AUTH, ("Content-Encoding", "deflate")])
    assert (reply.status, _json_status(reply)) == (413, too_large)
    assert sink.tables() == {}

    reply = http_request(receiver, "/v1/traces", at_limit, [PB, AUTH])
    assert reply.status == 200
    reply = http_request(
        receiver, "/v1/traces", gzip.compress(at_limit), [PB, AUTH, ("Content-Encoding", "gzip")]
    )
    assert reply.status == 200
    assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["fits", "fits"]


def test_default_limit_is_20_mib() -> None:
    with running_receiver() as (receiver, sink):
        over = b"\x00" * (20 * 1024 * 1024 + 1)
        reply = http_request(receiver, "/v1/logs", over, [PB])
        assert reply.status == 413
        assert status_pb2.Status.FromString(reply.body).message == "http: request body too large"
        assert http_request(receiver, "/v1/logs", b"", [PB]).status == 200
        assert sink.tables() == {}


# --- sink failures ---------------------------------------------------------------------------


class FlakySink(MemorySink):
    """Fails the way it is told to, then stores normally."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_with: BaseException | None = None

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        super().write(table, rows)


def test_sink_errors_answer_503_or_500_and_the_server_keeps_serving() -> None:
    sink = FlakySink()
    with Receiver(sink, http_port=0, grpc_port=None) as receiver:
        sink.fail_with = SinkUnavailable("store is busy")
        one_span = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"x"}]}]}]}'
        reply = http_request(receiver, "/v1/traces", one_span, [JS])
        assert reply.status == 503
        assert _json_status(reply) == {
            "code": 14,
            "message": "storage unavailable, retry later: store is busy",
        }
        sink.fail_with = RuntimeError("disk on fire")
        reply = http_request(receiver, "/v1/traces", _span_bytes(), [PB])
        assert reply.status == 500
        status = status_pb2.Status.FromString(reply.body)
        assert (status.code, status.message) == (
            13,
            "storing otel_traces rows failed: RuntimeError",
        )
        assert receiver.sink_errors.count == 2
        assert [r.status for r in receiver.requests] == [503, 500]
        sink.fail_with = None
        assert http_request(receiver, "/v1/traces", _span_bytes("later"), [PB]).status == 200
        assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["later"]


# --- custom routes ---------------------------------------------------------------------------


def test_added_routes_share_the_listener_and_its_auth(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served

    async def ping(request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        return web.json_response({"method": request.method, "echo": body.decode()})

    receiver.add_route("POST", "/api/query", ping)
    receiver.add_route("GET", "/health", ping, auth=False)
    assert http_request(receiver, "/api/query", b"select 1", [JS]).status == 401
    reply = http_request(receiver, "/api/query", b"select 1", [JS, AUTH])
    assert (reply.status, reply.json()) == (200, {"method": "POST", "echo": "select 1"})
    reply = http_request(receiver, "/health", method="GET")
    assert (reply.status, reply.json()) == (200, {"method": "GET", "echo": ""})
    # a route is method-specific: other methods fall through to the OTLP rules
    assert http_request(receiver, "/health", b"", [JS, AUTH]).status == 404
    assert [r.status for r in receiver.requests] == [401, 200, 200, 404]
    _still_serving(receiver, sink)


def test_many_bad_requests_in_a_row_then_good_ones(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    for index in range(30):
        http_request(receiver, "/v1/traces", bytes([index]) * 7, [PB, AUTH])
    statuses = {r.status for r in receiver.requests}
    assert 400 in statuses and statuses <= {400, 200}  # a few byte patterns are valid protobuf
    sink.clear()
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "after"}]}]}]})
    assert http_request(receiver, "/v1/traces", body.encode(), [JS, AUTH]).status == 200
    assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["after"]


# --- robustness ------------------------------------------------------------------------------


def test_expect_100_continue_is_answered_after_the_header_checks(
    served: tuple[Receiver, MemorySink],
) -> None:
    receiver, sink = served
    body = _span_bytes("continued")
    head = (
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        f"authorization: {KEY}\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", receiver.http_port), timeout=5) as conn:
        conn.sendall(head.encode())
        assert conn.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(body)
        assert conn.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
    assert [row["SpanName"] for row in sink.rows("otel_traces")] == ["continued"]
    denied = head.replace(KEY, "wrong")
    with socket.create_connection(("127.0.0.1", receiver.http_port), timeout=5) as conn:
        conn.sendall(denied.encode())  # refused at once: the body is never asked for
        assert conn.recv(4096).startswith(b"HTTP/1.1 401 Unauthorized\r\n")


def test_deeply_nested_json_is_400_not_a_crash(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    deep = b'{"resourceSpans":' + b"[" * 30_000 + b"]" * 30_000 + b"}"  # under LIMIT
    reply = http_request(receiver, "/v1/traces", deep, [JS, AUTH])
    assert reply.status == 400 and _json_status(reply)["code"] == 3
    _still_serving(receiver, sink)


def test_a_mapping_bug_is_a_500_status_and_counted(
    served: tuple[Receiver, MemorySink], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, sink = served

    def broken(request: object) -> list[dict[str, Any]]:
        raise KeyError("bug")

    monkeypatch.setattr(rows, "trace_rows", broken)
    reply = http_request(receiver, "/v1/traces", _span_bytes(), [PB, AUTH])
    assert reply.status == 500
    assert status_pb2.Status.FromString(reply.body).message == "internal error: KeyError"
    assert receiver.sink_errors.count >= 1
    monkeypatch.undo()
    _still_serving(receiver, sink)


def test_request_log_is_bounded_and_totals_are_kept() -> None:
    with Receiver(MemorySink(), http_port=0, grpc_port=None, keep_requests=3) as receiver:
        for _ in range(10):
            assert http_request(receiver, "/v1/traces", _span_bytes(), [PB]).status == 200
        http_request(receiver, "/nope", b"", [PB])
        assert 3 <= len(receiver.requests) <= 6
        assert receiver.requests[-1].status == 404
        assert receiver.items_received == {"traces": 10, "logs": 0, "metrics": 0}


def test_broken_framing_and_vanishing_clients(served: tuple[Receiver, MemorySink]) -> None:
    receiver, sink = served
    head = (
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        f"authorization: {KEY}\r\n"
    )
    with socket.create_connection(("127.0.0.1", receiver.http_port), timeout=5) as conn:
        conn.sendall((head + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n").encode())
        assert conn.recv(4096).split(b"\r\n")[0].endswith(b" 400 Bad Request")
    with socket.create_connection(("127.0.0.1", receiver.http_port), timeout=5) as conn:
        conn.sendall((head + "Content-Length: 1000\r\n\r\n").encode() + _span_bytes()[:20])
    deadline = time.monotonic() + 5
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    [gone] = receiver.requests
    assert gone.status == 400 and "failed to read the request body" in gone.message
    assert receiver.sink_errors.count == 0  # a client leaving is not our error
    _still_serving(receiver, sink)
