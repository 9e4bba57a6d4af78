"""wire.ingest: what a stored request keeps in memory while its rows wait for the writer."""

from __future__ import annotations

import time
import weakref
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from hyperdx.local import wire
from hyperdx.local.admission import Admission


class _Decoded:
    """Stands for a decoded request (upb messages cannot be weakly referenced)."""

    def __init__(self, records: int) -> None:
        self.records = records


def test_decoded_request_is_freed_before_the_rows_are_written() -> None:
    alive: list[weakref.ref[_Decoded]] = []
    written: list[tuple[str, int, bool]] = []

    def decode() -> _Decoded:
        decoded = _Decoded(3)
        alive.append(weakref.ref(decoded))
        return decoded

    class Sink:
        def write(self, table: str, rows: list[dict[str, Any]]) -> None:
            written.append((table, len(rows), alive[0]() is None))

    signal = wire.Signal(
        "logs",
        "/v1/logs",
        ExportLogsServiceRequest,
        lambda decoded: {"otel_logs": [{"Body": str(n)} for n in range(decoded.records)]},
        lambda decoded: decoded.records,
    )
    admission = Admission()
    stored = wire.ingest(admission, Sink(), signal, decode, wire.SinkErrors(), time.monotonic())
    assert stored == 3
    assert written == [("otel_logs", 3, True)]  # the decoded request was gone by then
    assert admission.queued_items == 0


def test_undecodable_request_is_refused_before_admission() -> None:
    def decode() -> Any:
        return wire.decode(b"\xff\xff", wire.PROTOBUF, ExportLogsServiceRequest)

    signal = wire.SIGNALS["/v1/logs"]
    admission = Admission()
    try:
        wire.ingest(admission, object(), signal, decode, wire.SinkErrors(), time.monotonic())  # type: ignore[arg-type]
    except wire.WireError as error:
        assert error.status == 400 and "failed to decode protobuf body" in error.message
    else:
        raise AssertionError("garbage was accepted")
    assert admission.queued_items == 0 and admission.refused == 0


def test_request_refused_under_overload_is_never_decoded() -> None:
    """With the limit already reached, a request is refused before its body is inflated and
    decoded (the work a refusal used to cost), and decoded once there is room again."""
    decoded: list[int] = []

    def decode() -> _Decoded:
        decoded.append(1)
        return _Decoded(2)

    class Sink:
        def write(self, table: str, rows: list[dict[str, Any]]) -> None:
            pass

    signal = wire.Signal(
        "logs",
        "/v1/logs",
        ExportLogsServiceRequest,
        lambda d: {"otel_logs": [{"Body": str(n)} for n in range(d.records)]},
        lambda d: d.records,
    )
    admission = Admission(initial_limit=4, min_limit=4, max_limit=4)
    since = time.monotonic()
    admission.admit(4, since)  # another request holds the whole limit
    try:
        wire.ingest(admission, Sink(), signal, decode, wire.SinkErrors(), time.monotonic())
    except wire.WireError as error:
        assert error.status == 503 and error.retry_after is not None
        assert "4 items queued ahead (limit 4)" in error.message
    else:
        raise AssertionError("admitted past a full limit")
    assert decoded == [] and admission.refused == 1
    admission.done(4, True, since)
    assert wire.ingest(admission, Sink(), signal, decode, wire.SinkErrors(), time.monotonic()) == 2
    assert decoded == [1] and admission.queued_items == 0
