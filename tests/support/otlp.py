"""A real OTLP receiver with an in-memory sink, for any test that needs to see what arrived.

    with running_receiver() as (receiver, sink):
        exporter = OTLPSpanExporter(endpoint=receiver.http_url + "/v1/traces")
        ...
        [row] = sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "work")

The receiver is the same code ``hyperdx local`` runs (auth, decoding, ClickStack row mapping);
only the storage is memory. Ports are ephemeral, so tests can run in parallel.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from hyperdx.local.receiver import Receiver
from hyperdx.local.sinks import MemorySink

__all__ = ["exporter_env", "running_receiver"]


@contextmanager
def running_receiver(
    api_keys: Sequence[str] | None = None,
    grpc: bool = False,
    *,
    max_body_bytes: int | None = None,
) -> Iterator[tuple[Receiver, MemorySink]]:
    """Start a receiver on 127.0.0.1 (HTTP, plus gRPC when ``grpc``) and stop it afterwards."""
    sink = MemorySink()
    kwargs = {} if max_body_bytes is None else {"max_body_bytes": max_body_bytes}
    receiver = Receiver(
        sink, http_port=0, grpc_port=0 if grpc else None, api_keys=api_keys, **kwargs
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
