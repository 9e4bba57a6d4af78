"""The request list every app receives, and a raw-socket client that sends bytes verbatim.

Every request carries ``rid=<label>`` in its query string: the span (``http.target`` /
``url.query``) says which request it belongs to. Raw sockets, not http.client, because some
requests are deliberately malformed (non-UTF-8 path bytes, obs-text header values, a
request without Host).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any

INCOMING_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_PARENT_ID = "00f067aa0ba902b7"
USER_AGENT = b"differential-suite/1"
BIG = 8 * 1024


@dataclass(frozen=True)
class Req:
    label: str
    target: bytes  # path (and query) without rid
    method: bytes = b"GET"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    version: bytes = b"HTTP/1.1"
    host: bool = True
    chunked: bool = False  # send the body with Transfer-Encoding: chunked

    def wire(self, port: int) -> bytes:
        sep = b"&" if b"?" in self.target else b"?"
        lines = [
            self.method
            + b" "
            + self.target
            + sep
            + b"rid="
            + self.label.encode()
            + b" "
            + self.version
        ]
        if self.host:
            lines.append(b"Host: 127.0.0.1:" + str(port).encode())
        if not any(name.lower() == b"user-agent" for name, _ in self.headers):
            lines.append(b"User-Agent: " + USER_AGENT)
        lines += [name + b": " + value for name, value in self.headers]
        body = self.body
        if self.chunked:
            lines.append(b"Transfer-Encoding: chunked")
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        elif self.body or self.method == b"POST":
            lines.append(b"Content-Length: " + str(len(self.body)).encode())
        lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _tp(
    trace_id: str = INCOMING_TRACE_ID, parent: str = INCOMING_PARENT_ID, flags: str = "01"
) -> bytes:
    return f"00-{trace_id}-{parent}-{flags}".encode()


REQUESTS: tuple[Req, ...] = (
    Req("route_param", b"/items/42"),
    Req("query_string", b"/items/7?q=hello%20world&x=%C3%A9&empty=&flag"),
    Req("not_found", b"/nope"),
    Req(
        "method_not_allowed",
        b"/items/1",
        method=b"POST",
        body=b"a=b",
        headers=((b"Content-Type", b"application/x-www-form-urlencoded"),),
    ),
    Req("options", b"/items/1", method=b"OPTIONS"),
    Req("unknown_method", b"/items/1", method=b"PURGE"),
    Req("chunked_body", b"/items/1", method=b"POST", body=b"x=1&y=2", chunked=True),
    Req("exception", b"/boom"),
    Req("streamed", b"/stream"),
    Req("head", b"/items/9", method=b"HEAD"),
    Req("non_ascii_path", b"/items/caf%C3%A9"),
    Req("non_utf8_percent_path", b"/items/%FF%FE"),
    Req("non_utf8_raw_path", b"/items/\xff\xfe"),
    Req("big_header", b"/items/11", headers=((b"X-Big", b"v" * BIG),)),
    Req("big_user_agent", b"/items/12", headers=((b"User-Agent", b"u" * BIG),)),
    Req(
        "traceparent",
        b"/ctx",
        headers=(
            (b"traceparent", _tp()),
            (b"tracestate", b"vendor=abc,other=x"),
            (b"baggage", b"user=alice,tenant=t%201;prop=1"),
        ),
    ),
    Req(
        "traceparent_invalid", b"/ctx", headers=((b"traceparent", b"00-xyz-not-a-traceparent-01"),)
    ),
    Req("traceparent_zero_ids", b"/ctx", headers=((b"traceparent", _tp("0" * 32, "0" * 16)),)),
    Req("traceparent_uppercase", b"/ctx", headers=((b"traceparent", _tp().upper()),)),
    Req("traceparent_unsampled", b"/ctx", headers=((b"traceparent", _tp(flags="00")),)),
    Req(
        "traceparent_twice",
        b"/ctx",
        headers=((b"traceparent", _tp()), (b"traceparent", _tp("1" * 32, "2" * 16))),
    ),
    Req(
        "baggage_broken",
        b"/ctx",
        headers=((b"traceparent", _tp()), (b"baggage", b"=;;,%%zz,k=\xff")),
    ),
    Req("baggage_only", b"/ctx", headers=((b"baggage", b"user=bob"),)),
    Req(
        "header_obs_text",
        b"/items/13",
        headers=(
            (b"X-Odd", b"\x80\xfe caf\xc3\xa9"),
            (b"X-Empty", b""),
            (b"User-Agent", b"ua\xff"),
        ),
    ),
    Req("no_host_http10", b"/items/14", version=b"HTTP/1.0", host=False),
    Req(
        "captured_headers",
        b"/items/15",
        headers=(
            (b"X-Custom-Req", b"v1"),
            (b"X-Multi", b"a"),
            (b"X-Multi", b"b"),
            (b"Authorization", b"Bearer not-for-telemetry"),
            (b"Cookie", b"session=not-for-telemetry"),
            (b"X-Api-Key", b"not-for-telemetry"),
        ),
    ),
    Req("excluded_generic", b"/excluded/generic"),
    Req("excluded_specific", b"/excluded/specific"),
)
# Sent all at once after the list above: each carries its own trace id, so context leaking
# between concurrent requests (ASGI servers run them interleaved) shows as a wrong parent.
PARALLEL_REQUESTS: tuple[Req, ...] = tuple(
    Req(
        f"parallel_{i}", b"/ctx", headers=((b"traceparent", _tp(f"{i + 1:032x}", f"{i + 1:016x}")),)
    )
    for i in range(8)
)
LABELS = tuple(r.label for r in REQUESTS + PARALLEL_REQUESTS)
assert len(set(LABELS)) == len(LABELS)


@dataclass
class Reply:
    status: int | None  # None: the connection closed without a parsable answer
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


def send(port: int, req: Req, timeout: float = 30.0) -> Reply:
    """Send ``req`` verbatim, read to EOF, parse status, headers and (de-chunked) body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(req.wire(port))
        data = bytearray()
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError as error:  # reset after a partial answer: keep what arrived
            if not data:
                return Reply(None, error=f"{type(error).__name__}: {error}")
    return parse(bytes(data), head_only=req.method == b"HEAD")


def parse(data: bytes, head_only: bool) -> Reply:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return Reply(None, error=f"no complete response head: {data[:80]!r}")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
    if head_only:
        body = b""
    elif ("transfer-encoding", "chunked") in headers:
        body = _dechunk(body)
    return Reply(status, headers, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)
