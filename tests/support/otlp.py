"""A real OTLP receiver with an in-memory sink, for any test that needs to see what arrived.

    with running_receiver() as (receiver, sink):
        exporter = OTLPSpanExporter(endpoint=receiver.http_url + "/v1/traces")
        ...
        [row] = sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "work")

The receiver is the same code ``hyperdx local`` runs (auth, decoding, ClickStack row mapping);
only the storage is memory. Ports are ephemeral, so tests can run in parallel.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hyperdx.local.receiver import DEFAULT_MAX_BODY_BYTES, Receiver
from hyperdx.local.sinks import MemorySink

__all__ = ["HttpReply", "exporter_env", "http_request", "running_receiver"]


@contextmanager
def running_receiver(
    api_keys: Sequence[str] | None = None,
    grpc: bool = False,
    *,
    max_body_bytes: int | None = None,
) -> Iterator[tuple[Receiver, MemorySink]]:
    """Start a receiver on 127.0.0.1 (HTTP, plus gRPC when ``grpc``) and stop it afterwards."""
    sink = MemorySink()
    receiver = Receiver(
        sink,
        http_port=0,
        grpc_port=0 if grpc else None,
        api_keys=api_keys,
        max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES,
    )
    with receiver:
        yield receiver, sink


def exporter_env(
    receiver: Receiver, api_key: str | None = None, protocol: str = "http/protobuf"
) -> dict[str, str]:
    """Environment for an app under test (subprocess) to export to ``receiver`` quickly."""
    endpoint = receiver.grpc_url if protocol == "grpc" else receiver.http_url
    if not endpoint:
        raise ValueError(f"protocol={protocol!r} but that listener of the receiver is off")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
    }
    if api_key is not None:
        env["HYPERDX_API_KEY"] = api_key
    return env


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    receiver: Receiver,
    path: str,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    *,
    method: str = "POST",
    chunks: Sequence[bytes] | None = None,
) -> HttpReply:
    """Send one raw HTTP request to the receiver, headers exactly as given (duplicates kept).

    With ``chunks`` the body goes out with ``Transfer-Encoding: chunked`` and no
    Content-Length, the way the OpenTelemetry JavaScript exporters send it.
    """
    connection = http.client.HTTPConnection("127.0.0.1", receiver.http_port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if chunks is not None:
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            for chunk in chunks:
                connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            connection.send(b"0\r\n\r\n")
        else:
            if body or method in ("POST", "PUT"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
        response = connection.getresponse()
        return HttpReply(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=response.read(),
        )
    finally:
        connection.close()
