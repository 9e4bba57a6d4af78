"""`hyperdx local` under more load than it can store: backpressure without loss or duplicates.

A request is either answered 200 (its items are stored) or refused with a retryable answer
(HTTP 503 + Retry-After, gRPC UNAVAILABLE + RetryInfo) and nothing of it is stored; so table
rows always equal the items acknowledged. Bodies are capped (413) before decompression bombs
can inflate. No assertion here depends on the machine's speed.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("chdb")

import grpc  # noqa: E402
from google.rpc.error_details_pb2 import RetryInfo  # noqa: E402
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (  # noqa: E402
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (  # noqa: E402
    ExportLogsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler  # noqa: E402
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

from hyperdx.local import rows, wire  # noqa: E402
from hyperdx.local.admission import Admission  # noqa: E402
from hyperdx.local.client import ServerState, read_state  # noqa: E402
from hyperdx.local.receiver import Receiver  # noqa: E402
from hyperdx.local.store import STATE_FILE, ChdbSink, Store  # noqa: E402

LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
MIB = 1024 * 1024


# --- helpers ---------------------------------------------------------------------------------


def log_body(count: int, first: int) -> bytes:
    """An ExportLogsServiceRequest of ``count`` records numbered from ``first`` (attr seq)."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="load-test"))
    )
    scope_logs = resource_logs.scope_logs.add()
    now = time.time_ns()
    for index in range(count):
        record = scope_logs.log_records.add()
        record.time_unix_nano = now + index
        record.severity_number, record.severity_text = 9, "INFO"
        record.body.string_value = f"request {first + index} done"
        record.attributes.append(KeyValue(key="seq", value=AnyValue(int_value=first + index)))
    return request.SerializeToString()


@dataclass
class Running:
    proc: subprocess.Popen[str]
    state: ServerState
    data_dir: Path

    def query(self, sql: str) -> list[dict[str, Any]]:
        request = urllib.request.Request(
            self.state.query_url,
            data=json.dumps({"sql": sql}).encode(),
            headers={"Authorization": self.state.api_key},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            result: list[dict[str, Any]] = json.loads(response.read())["rows"]
            return result

    def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(
            f"http://{self.state.host}:{self.state.http_port}{path}",
            data=body,
            headers={
                "Content-Type": "application/x-protobuf",
                "Authorization": self.state.api_key,
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    command = [sys.executable, "-m", "hyperdx.cli", "local"]
    command += ["--data-dir", str(tmp_path), "--http-port", "0", "--grpc-port", "0"]
    help_text = subprocess.run(
        [*command[:4], "--help"], capture_output=True, text=True, check=False
    ).stdout
    for option in ("--clickhouse-port", "--ui-port"):  # other listeners: any free port
        if option in help_text:
            command += [option, "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline and state is None:
            if proc.poll() is not None:
                raise AssertionError(f"hyperdx local exited: {proc.stderr.read()}")  # type: ignore[union-attr]
            if (tmp_path / STATE_FILE).exists():
                found = read_state(tmp_path)
                state = found if found is not None and found.pid == proc.pid else None
            time.sleep(0.1)
        assert state is not None, "hyperdx local did not start within 60 s"
        yield Running(proc, state, tmp_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def count_rows(server: Running, table: str = "otel_logs") -> int:
    return int(server.query(f"SELECT count() AS n FROM {table}")[0]["n"])


# --- overload --------------------------------------------------------------------------------


def test_http_overload_is_503_with_retry_after_and_rows_equal_acknowledged(
    server: Running,
) -> None:
    """48 simultaneous 4,000-record requests: far more than fits the admission budget."""
    batch = 4000
    bodies = [gzip.compress(log_body(batch, n * batch)) for n in range(48)]
    start = threading.Barrier(48)
    queries: list[int] = []

    def send(body: bytes) -> tuple[int, dict[str, str], bytes]:
        start.wait()
        return server.post("/v1/logs", body, {"Content-Encoding": "gzip"})

    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(send, bodies))
        # hyperdx sql keeps answering while ingestion is saturated (no timing asserted)
        queries.append(count_rows(server))
    statuses = Counter(status for status, _, _ in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] >= 1 and statuses[200] >= 1, statuses
    for status, headers, body in answers:
        if status == 503:
            assert int(headers["Retry-After"]) >= 1
            assert b"retry later" in body
    assert count_rows(server) == statuses[200] * batch
    assert queries and queries[0] <= statuses[200] * batch
    # every stored record exactly once
    stored = server.query("SELECT uniqExact(LogAttributes['seq']) AS n FROM otel_logs")
    assert int(stored[0]["n"]) == statuses[200] * batch


def test_grpc_overload_is_unavailable_with_retry_info_and_rows_equal_acknowledged(
    server: Running,
) -> None:
    batch = 4000
    bodies = [log_body(batch, n * batch) for n in range(48)]
    start = threading.Barrier(48)
    target = f"{server.state.host}:{server.state.grpc_port}"

    def send(body: bytes) -> tuple[str, bytes | None]:
        with grpc.insecure_channel(target) as channel:
            call = channel.unary_unary(LOGS_EXPORT)
            start.wait()
            try:
                call(body, metadata=(("authorization", server.state.api_key),), timeout=60)
                return "OK", None
            except grpc.RpcError as error:
                trailers = dict(error.trailing_metadata() or ())
                return error.code().name, trailers.get("google.rpc.retryinfo-bin")

    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(send, bodies))
    codes = Counter(code for code, _ in answers)
    assert set(codes) <= {"OK", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}, codes
    assert codes["UNAVAILABLE"] >= 1 and codes["OK"] >= 1, codes
    for code, info in answers:
        if code == "UNAVAILABLE":
            assert info is not None
            assert RetryInfo.FromString(info).retry_delay.ToTimedelta().total_seconds() > 0
    assert count_rows(server) == codes["OK"] * batch


# --- the real OpenTelemetry exporters retry and nothing is lost or doubled ------------------


@pytest.fixture
def strict_receiver(tmp_path: Path) -> Iterator[Receiver]:
    """Real chDB store behind a receiver that admits one request at a time (tiny budget),
    so exporters running side by side are refused (503 / UNAVAILABLE) for sure."""
    store = Store.open(tmp_path)
    admission = Admission(initial_limit=1, min_limit=1, max_limit=1)
    receiver = Receiver(ChdbSink(store), http_port=0, grpc_port=0, admission=admission)
    try:
        yield receiver.start()
    finally:
        receiver.stop()
        store.close()


class Counting:
    """Wraps a real exporter and counts the items it reported exported (after its retries)
    and those it gave up on: what the application would see."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.exported = 0
        self.given_up = 0

    def export(self, batch: Any) -> Any:
        result = self.inner.export(batch)
        if result.name == "SUCCESS":
            self.exported += len(batch)
        else:
            self.given_up += len(batch)
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self.inner.shutdown()


def _emit_logs(exporter: Counting, thread: int, count: int) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": f"sdk-{thread}"}))
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            exporter,  # type: ignore[arg-type]
            max_export_batch_size=256,
            schedule_delay_millis=50,
        )
    )
    logger = logging.getLogger(f"hyperdx.test.load.{thread}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        for index in range(count):
            logger.info("sdk record %d", index, extra={"seq": f"{thread}-{index}"})
    finally:
        logger.removeHandler(handler)
        provider.shutdown()  # flushes: every batch exported (or given up) before it returns


def _check_exactly_once(
    receiver: Receiver, signal: str, sql: str, exporters: list[Counting], total: int
) -> None:
    """Every item the exporters reported exported is stored exactly once, nothing else is,
    and the retries delivered (a batch is given up only after ~6 refusals in a row)."""
    statuses = Counter(r.status for r in receiver.requests_for(signal))
    assert statuses[503] >= 1, statuses  # refused at least once...
    exported = sum(e.exported for e in exporters)
    assert exported + sum(e.given_up for e in exporters) == total
    assert exported >= total // 2, (exported, total)  # ...and the retries got through
    store = receiver.sink.store  # type: ignore[attr-defined]
    result = store.query(sql).rows[0]
    assert (int(result["n"]), int(result["u"])) == (exported, exported)
    assert receiver.items_received[signal] == exported


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sdk_log_exporters_retry_refusals_and_store_each_record_once(
    strict_receiver: Receiver, protocol: str
) -> None:
    threads, per_thread = 4, 1024

    def exporter() -> Counting:
        if protocol == "http":
            inner: Any = OTLPLogExporter(endpoint=f"{strict_receiver.http_url}/v1/logs")
        else:
            endpoint = strict_receiver.grpc_url.replace("http://", "")
            inner = GrpcLogExporter(endpoint=endpoint, insecure=True)
        return Counting(inner)

    exporters = [exporter() for _ in range(threads)]
    workers = [
        threading.Thread(target=_emit_logs, args=(exporters[n], n, per_thread))
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    sql = "SELECT count() AS n, uniqExact(LogAttributes['seq']) AS u FROM otel_logs"
    _check_exactly_once(strict_receiver, "logs", sql, exporters, threads * per_thread)


def test_sdk_span_exporter_retries_refusals_and_stores_each_span_once(
    strict_receiver: Receiver,
) -> None:
    threads, per_thread = 4, 512
    exporters = [
        Counting(OTLPSpanExporter(endpoint=f"{strict_receiver.http_url}/v1/traces"))
        for _ in range(threads)
    ]

    def emit(thread: int) -> None:
        provider = TracerProvider(resource=Resource.create({"service.name": f"sdk-{thread}"}))
        provider.add_span_processor(
            BatchSpanProcessor(
                exporters[thread],  # type: ignore[arg-type]
                max_export_batch_size=128,
                schedule_delay_millis=50,
            )
        )
        tracer = provider.get_tracer("load")
        for index in range(per_thread):
            with tracer.start_as_current_span("op", attributes={"seq": f"{thread}-{index}"}):
                pass
        provider.shutdown()

    workers = [threading.Thread(target=emit, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    sql = "SELECT count() AS n, uniqExact(SpanAttributes['seq']) AS u FROM otel_traces"
    _check_exactly_once(strict_receiver, "traces", sql, exporters, threads * per_thread)


# --- size caps -------------------------------------------------------------------------------


def test_oversize_bodies_are_413_and_a_gzip_bomb_is_refused_without_inflating(
    server: Running,
) -> None:
    over = b"\x00" * (20 * MIB + 1)
    status, _, body = server.post("/v1/logs", over)
    assert status == 413
    assert b"request body too large" in body
    # ~100 KiB on the wire, 100 MiB inflated
    bomb = gzip.compress(b"\x00" * (100 * MIB), 9)
    assert len(bomb) < MIB
    status, _, body = server.post("/v1/logs", bomb, {"Content-Encoding": "gzip"})
    assert status == 413
    assert b"request body too large" in body
    ok_status, _, _ = server.post(
        "/v1/logs", gzip.compress(log_body(3, 0)), {"Content-Encoding": "gzip"}
    )
    assert ok_status == 200
    assert count_rows(server) == 3


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd"])
def test_decompression_stops_at_the_cap(encoding: str) -> None:
    """A 1 GiB bomb is refused after inflating little more than the 20 MiB cap."""
    limit = 20 * MIB
    zeros = b"\x00" * (256 * MIB)
    if encoding == "gzip":
        bomb = gzip.compress(zeros, 9)
    elif encoding == "deflate":
        bomb = zlib.compress(zeros, 9)
    else:
        import zstandard

        bomb = zstandard.ZstdCompressor().compress(zeros)
    del zeros
    tracemalloc.start()
    try:
        with pytest.raises(wire.WireError) as refused:
            wire.decompress(bomb, encoding, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.status == 413
    assert peak < 3 * limit, f"inflated {peak} bytes to refuse a body over {limit}"


# --- fast log mapping equals the full transform --------------------------------------------


def test_plain_log_fast_path_matches_the_full_transform(monkeypatch: pytest.MonkeyPatch) -> None:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="svc"))
    )
    records = resource_logs.scope_logs.add().log_records
    values = [
        AnyValue(string_value="x"),
        AnyValue(int_value=-7),
        AnyValue(double_value=1e21),
        AnyValue(double_value=0.5),
        AnyValue(bool_value=True),
        AnyValue(bytes_value=b"\x00\xff"),
        AnyValue(),
    ]
    bodies = [AnyValue(string_value="plain ERROR text"), AnyValue(int_value=3), AnyValue()]
    for index, body in enumerate(bodies * 3):
        record = records.add()
        record.time_unix_nano = 1_700_000_000_000_000_000 + index
        record.severity_number, record.severity_text = [(9, "Info"), (0, "WARN"), (17, "")][
            index % 3
        ]
        record.body.CopyFrom(body)
        for n, value in enumerate(values[index % 4 :]):
            record.attributes.append(KeyValue(key=f"k{n}", value=value))
        record.attributes.append(KeyValue(key="k0", value=AnyValue(string_value="last wins")))
    fast = rows.log_rows(request)
    monkeypatch.setattr(rows, "plain_log", lambda record, text, number: None)
    assert fast == rows.log_rows(request)
    assert len(fast) == 9


# --- TTL -------------------------------------------------------------------------------------


def test_thirty_day_ttl_drops_back_dated_rows(tmp_path: Path) -> None:
    """ClickStack's ``TTL toDateTime(Timestamp) + toIntervalDay(30)``: rows already past it
    are dropped as they are written (ClickHouse applies the TTL to new parts), rows inside it
    stay through merges."""
    day = 86_400 * 1_000_000_000
    now = time.time_ns()
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for age_days, text in ((400, "old"), (40, "old"), (31, "old"), (29, "kept"), (0, "new")):
        record = records.add()
        record.time_unix_nano = now - age_days * day
        record.severity_number = 9
        record.body.string_value = text
    with Store.open(tmp_path) as store:
        assert store.insert("otel_logs", rows.log_rows(request)) == 5
        store.query("OPTIMIZE TABLE otel_logs FINAL")
        left = store.query("SELECT Body FROM otel_logs ORDER BY Timestamp").rows
        assert [row["Body"] for row in left] == ["kept", "new"]
        ttl = store.query("SHOW CREATE TABLE otel_logs").rows[0]
        assert "TTL toDateTime(Timestamp) + toIntervalDay(30)" in str(ttl)


# --- the writer refuses rows whose client may have given up --------------------------------


def test_rows_past_their_commit_deadline_are_refused_and_not_stored(tmp_path: Path) -> None:
    from hyperdx.local.sinks import SinkUnavailable

    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.time_unix_nano, record.severity_number = time.time_ns(), 9
    slow_started = threading.Event()

    with Store.open(tmp_path) as store:
        real_stream = store._commits._stream

        def slow_stream(
            table: str, payloads: list[bytes], fmt: str = "JSONEachRow", token: str | None = None
        ) -> None:
            slow_started.set()
            time.sleep(0.5)  # an insert in progress: the next payload queues behind it
            real_stream(table, payloads, fmt, token)

        store._commits._stream = slow_stream
        # a lone late payload (writer idle) is written: refusing it would gain nothing
        assert store.insert("otel_logs", rows.log_rows(request), deadline=time.monotonic() - 1)
        slow_started.clear()
        ahead = threading.Thread(target=store.insert, args=("otel_logs", rows.log_rows(request)))
        ahead.start()
        slow_started.wait(10)
        with pytest.raises(SinkUnavailable):  # queued behind it and past its deadline
            store.insert("otel_logs", rows.log_rows(request), deadline=time.monotonic() + 0.1)
        ahead.join()
        assert store.query("SELECT count() AS n FROM otel_logs").rows[0]["n"] == 2


def test_data_directory_size_is_printed_at_start(server: Running) -> None:
    os.kill(server.proc.pid, 15)
    out, _ = server.proc.communicate(timeout=30)
    assert "on disk" in out.splitlines()[0], out
