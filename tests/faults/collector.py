"""A misbehaving OTLP/HTTP collector on a real socket: one fault per instance.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies, gzip) to take the SDK's
exports, counts every span and log record it *accepted* (so a retried batch that arrives twice
shows up as a duplicate), and misbehaves as told:

    healthy        200 with an empty ExportResponse
    429 / 503      every other request: 429/503 with ``Retry-After: <retry_after>``
    503-long       every request: 503 with ``Retry-After: 3600`` (the client must not wait)
    500            every request: 500
    partial        200 with partial success: the last item of each request rejected
    413            413 for any body over ``max_body`` bytes (as sent, compressed)
    reset          every other request: read half the body, then RST the connection
    tls            answers with TLS (a self-signed cert) to a plain-HTTP client
    plain          answers plain HTTP to a TLS client (``https://`` endpoint)
    slow           takes the request, then sends the response one byte per second
    held           accepts the items, then holds the 200 back for ``hold`` seconds

A name that does not resolve needs no server: the endpoint is ``http://collector.invalid``.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

FAULTS = (
    "healthy",
    "429",
    "503",
    "503-long",
    "500",
    "partial",
    "413",
    "reset",
    "tls",
    "plain",
    "slow",
    "held",
)


# The exit summary's reason for a batch sent but not answered by the shutdown deadline.
IN_FLIGHT_AT_DEADLINE = "in flight at the shutdown deadline"


def summary_count(summary: str, signal_name: str, reason: str | None = None) -> int:
    """From the SDK's exit summary "<total> <signal> (... n <reason> ...)": ``n``, or the
    signal's total without a ``reason``; 0 if absent."""
    part = next((p for p in summary.split("; ") if re.search(rf"\d+ {signal_name} \(", p)), "")
    pattern = rf"(\d+) {re.escape(reason)}" if reason else rf"(\d+) {signal_name} \("
    match = re.search(pattern, part)
    return int(match.group(1)) if match else 0


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (openssl CLI)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
    return cert, key


@dataclass
class Received:
    """What the collector accepted, by item identity."""

    spans: Counter[bytes] = field(default_factory=Counter)  # span_id -> times accepted
    logs: Counter[str] = field(default_factory=Counter)  # body -> times accepted
    rejected_spans: int = 0  # rejected through partial success
    rejected_logs: int = 0
    requests: int = 0
    answered: Counter[int] = field(default_factory=Counter)  # status -> count
    # (path, time answered, status; 0 = connection reset), in order
    exchanges: list[tuple[str, float, int]] = field(default_factory=list)
    per_path: Counter[str] = field(default_factory=Counter)  # requests seen per path

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.spans.values()) + sum(n - 1 for n in self.logs.values())


class FaultyCollector:
    """``with FaultyCollector("503", tmp) as c: ... c.endpoint ... c.received``"""

    def __init__(
        self,
        fault: str,
        workdir: Path,
        *,
        retry_after: int = 1,
        max_body: int = 6000,
        hold: float = 5.0,
    ) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        self.fault = fault
        self.retry_after = retry_after
        self.max_body = max_body
        self.hold = hold
        self.received = Received()
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        if fault == "tls":
            cert, key = self_signed_cert(workdir)
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(cert, key)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="faulty-collector", daemon=True)

    @property
    def endpoint(self) -> str:
        """The base URL an OTLP/HTTP exporter should use (``https`` for the ``plain`` fault)."""
        scheme = "https" if self.fault == "plain" else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultyCollector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    # -- server ------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)  # fails on plain HTTP
            reader = conn.makefile("rb")
            while not self._stop.is_set() and self._one_request(conn, reader):
                pass
        except (OSError, ValueError):
            pass  # the faults themselves (and TLS handshakes that cannot work) end up here
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _one_request(self, conn: socket.socket, reader: object) -> bool:
        line = reader.readline()  # type: ignore[attr-defined]
        if not line:
            return False
        if self.fault == "plain" and not line.startswith((b"POST", b"GET")):
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return False
        path = line.split()[1].decode()
        headers: dict[str, str] = {}
        while True:
            h = reader.readline()  # type: ignore[attr-defined]
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        with self._lock:
            self.received.requests += 1
            self.received.per_path[path] += 1
            every_other = self.received.per_path[path] % 2 == 1  # the retry gets through
        if self.fault == "reset" and every_other:
            reader.read(length // 2)  # type: ignore[attr-defined]
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # RST: the client sees the connection die mid-body
            self._log(path, 0)
            return False
        body = reader.read(length)  # type: ignore[attr-defined]
        if self.fault in ("429", "503") and every_other:
            return self._reply(conn, path, int(self.fault), retry_after=str(self.retry_after))
        if self.fault == "503-long":
            return self._reply(conn, path, 503, retry_after="3600")
        if self.fault == "500":
            return self._reply(conn, path, 500)
        if self.fault == "413" and length > self.max_body:
            return self._reply(conn, path, 413)
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        answer, commit = self._accept_items(path, body)
        if self.fault == "slow":
            if self._trickle(conn, answer):
                commit()  # only an answer the client could read counts as accepted
            return False
        commit()
        if self.fault == "held" and self._stop.wait(self.hold):
            return False
        return self._reply(conn, path, 200, answer)

    def _accept_items(self, path: str, body: bytes) -> tuple[bytes, Callable[[], None]]:
        """The answer to an export request (partial success or not), and the function that
        counts its items as accepted."""
        reject = 1 if self.fault == "partial" else 0
        if path.endswith("/v1/traces"):
            req = ExportTraceServiceRequest.FromString(body)
            spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
            kept = spans[: len(spans) - reject] if spans else []
            trace_answer = ExportTraceServiceResponse()
            if reject and spans:
                trace_answer.partial_success.rejected_spans = reject
                trace_answer.partial_success.error_message = "span rejected by the test collector"

            def commit_spans() -> None:
                with self._lock:
                    self.received.spans.update(s.span_id for s in kept)
                    self.received.rejected_spans += len(spans) - len(kept)

            return trace_answer.SerializeToString(), commit_spans
        if path.endswith("/v1/logs"):
            lreq = ExportLogsServiceRequest.FromString(body)
            records = [
                r for rl in lreq.resource_logs for sl in rl.scope_logs for r in sl.log_records
            ]
            kept_logs = records[: len(records) - reject] if records else []
            logs_answer = ExportLogsServiceResponse()
            if reject and records:
                logs_answer.partial_success.rejected_log_records = reject
                logs_answer.partial_success.error_message = "record rejected by the test collector"

            def commit_logs() -> None:
                with self._lock:
                    self.received.logs.update(r.body.string_value for r in kept_logs)
                    self.received.rejected_logs += len(records) - len(kept_logs)

            return logs_answer.SerializeToString(), commit_logs
        return b"", lambda: None  # metrics and anything else: accepted, not counted

    def _log(self, path: str, status: int) -> None:
        with self._lock:
            self.received.answered[status] += 1
            self.received.exchanges.append((path, time.monotonic(), status))

    def _reply(
        self,
        conn: socket.socket,
        path: str,
        status: int,
        body: bytes = b"",
        retry_after: str | None = None,
    ) -> bool:
        self._log(path, status)
        head = [
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Fault'}",
            "Content-Type: application/x-protobuf",
            f"Content-Length: {len(body)}",
        ]
        if retry_after is not None:
            head.append(f"Retry-After: {retry_after}")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        return True

    def _trickle(self, conn: socket.socket, body: bytes) -> bool:
        """The whole answer, one byte per second; False if the client gave up first."""
        data = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        for i in range(len(data)):
            if self._stop.wait(1.0):
                return False
            conn.sendall(data[i : i + 1])
        return True
