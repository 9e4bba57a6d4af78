"""`hyperdx local` as a real subprocess: real OTel exporters in, SQL out; durability after
``kill -9``; one owner per data directory; the key-protected query endpoint; clean stop."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("chdb")

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: E402
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: E402
    OTLPMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler  # noqa: E402
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.trace import SpanKind, Status, StatusCode  # noqa: E402

from hyperdx.local.client import HttpReader, ServerState, read_state  # noqa: E402
from hyperdx.local.store import STATE_FILE  # noqa: E402

# The SDK's LoggingHandler is deprecated in favour of the logging instrumentation's; it is
# still the plainest way to drive a real OTLP log exporter from stdlib logging.
pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")


@dataclass
class Running:
    proc: subprocess.Popen[str]
    data_dir: Path
    state: ServerState

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.state.http_port}"

    def reader(self) -> HttpReader:
        return HttpReader(self.state)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return self.reader().query(sql).rows


def start_local(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Running:
    """Start `hyperdx local` on ephemeral ports and wait for its state file."""
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hyperdx.cli",
            "local",
            "--data-dir",
            str(data_dir),
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = read_state(data_dir) if (data_dir / STATE_FILE).exists() else None
        if state is not None and state.pid == proc.pid:
            return Running(proc, data_dir, state)
        if proc.poll() is not None:
            raise AssertionError(f"hyperdx local exited {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("hyperdx local did not start within 30 s")


def stop_local(running: Running, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    if running.proc.poll() is None:
        running.proc.send_signal(sig)
    out, err = running.proc.communicate(timeout=30)
    return running.proc.returncode, out, err


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_local(tmp_path_factory.mktemp("local"))
    yield running
    stop_local(running)


def providers(running: Running, service: str) -> tuple[TracerProvider, LoggerProvider]:
    headers = {"authorization": running.state.api_key}
    resource = Resource.create({"service.name": service})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"{running.http_url}/v1/traces", headers=headers)
        )
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(
            OTLPLogExporter(endpoint=f"{running.http_url}/v1/logs", headers=headers)
        )
    )
    return tracer_provider, logger_provider


def otel_logger(logger_provider: LoggerProvider, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [LoggingHandler(logger_provider=logger_provider)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def test_banner_prints_the_sdk_environment(server: Running) -> None:
    # the banner goes out before the state file is written; peek without blocking
    assert server.proc.poll() is None
    key_file = server.data_dir / "api-key"
    assert key_file.read_text().strip() == server.state.api_key
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert oct((server.data_dir / STATE_FILE).stat().st_mode & 0o777) == "0o600"


def test_exporters_land_in_clickstack_tables_and_join(server: Running) -> None:
    tracer_provider, logger_provider = providers(server, "server-test")
    tracer = tracer_provider.get_tracer("test")
    log = otel_logger(logger_provider, "server-test")
    with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
        log.warning("checkout for %s", "alice")
        with tracer.start_as_current_span("charge card") as child:
            child.set_status(Status(StatusCode.ERROR, "card declined"))
            log.error("payment failed")
    trace_id = format(root.get_span_context().trace_id, "032x")
    tracer_provider.shutdown()
    logger_provider.shutdown()

    spans = server.rows(
        "SELECT SpanName, SpanKind, StatusCode, ParentSpanId = '' AS root, ServiceName"
        f" FROM otel_traces WHERE TraceId = '{trace_id}' ORDER BY Timestamp"
    )
    assert spans == [
        {
            "SpanName": "GET /checkout",
            "SpanKind": "Server",
            "StatusCode": "Unset",
            "root": True,
            "ServiceName": "server-test",
        },
        {
            "SpanName": "charge card",
            "SpanKind": "Internal",
            "StatusCode": "Error",
            "root": False,
            "ServiceName": "server-test",
        },
    ]
    joined = server.rows(
        "SELECT l.Body AS Body, l.SeverityText AS Level, t.SpanName AS Span"
        " FROM otel_logs AS l INNER JOIN otel_traces AS t"
        " ON l.TraceId = t.TraceId AND l.SpanId = t.SpanId"
        f" WHERE l.TraceId = '{trace_id}' ORDER BY l.Timestamp"
    )
    assert joined == [
        {"Body": "checkout for alice", "Level": "warn", "Span": "GET /checkout"},
        {"Body": "payment failed", "Level": "error", "Span": "charge card"},
    ]


def test_grpc_and_metrics(server: Running) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "grpc-test"}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            GrpcSpanExporter(
                endpoint=f"127.0.0.1:{server.state.grpc_port}",
                insecure=True,
                headers=(("authorization", server.state.api_key),),
            )
        )
    )
    with provider.get_tracer("t").start_as_current_span("grpc span"):
        pass
    provider.shutdown()
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(
            endpoint=f"{server.http_url}/v1/metrics",
            headers={"authorization": server.state.api_key},
        ),
        export_interval_millis=3_600_000,
    )
    meters = MeterProvider(
        resource=Resource.create({"service.name": "metric-test"}), metric_readers=[reader]
    )
    meter = meters.get_meter("m")
    meter.create_counter("app.checkouts").add(3, {"plan": "pro"})
    meter.create_histogram("app.latency", unit="ms").record(12.5)
    meters.shutdown()  # one final collect + export, answered before it returns
    assert server.rows("SELECT SpanName FROM otel_traces WHERE ServiceName = 'grpc-test'") == [
        {"SpanName": "grpc span"}
    ]
    assert server.rows(
        "SELECT MetricName, Value, Attributes, IsMonotonic FROM otel_metrics_sum"
        " WHERE ServiceName = 'metric-test'"
    ) == [
        {
            "MetricName": "app.checkouts",
            "Value": 3,
            "Attributes": {"plan": "pro"},
            "IsMonotonic": True,
        }
    ]
    assert server.rows(
        "SELECT MetricName, MetricUnit, Count, Sum FROM otel_metrics_histogram"
        " WHERE ServiceName = 'metric-test'"
    ) == [{"MetricName": "app.latency", "MetricUnit": "ms", "Count": 1, "Sum": 12.5}]


def _post_query(server: Running, body: bytes, key: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = key
    request = urllib.request.Request(
        f"{server.http_url}/hyperdx/v1/query", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_query_endpoint_requires_the_key(server: Running) -> None:
    body = json.dumps({"sql": "SELECT 1 AS one"}).encode()
    key = server.state.api_key
    assert _post_query(server, body, None)[0] == 401
    assert _post_query(server, body, "wrong")[0] == 401
    assert _post_query(server, body, f"Bearer {key}")[0] == 401
    status, doc = _post_query(server, body, key)
    assert (status, doc) == (
        200,
        {"columns": [{"name": "one", "type": "UInt8"}], "rows": [{"one": 1}]},
    )
    status, doc = _post_query(
        server,
        json.dumps({"sql": "SELECT {n:UInt32} + 1 AS n", "params": {"n": 41}}).encode(),
        key,
    )
    assert doc["rows"] == [{"n": 42}]
    status, doc = _post_query(server, b"not json", key)
    assert status == 400 and "body must be" in doc["message"]
    status, doc = _post_query(server, json.dumps({"sql": "SELECT nope"}).encode(), key)
    assert status == 400 and "UNKNOWN_IDENTIFIER" in doc["message"]
    # still serving
    assert _post_query(server, body, key)[0] == 200


def test_second_instance_fails_at_once_naming_the_owner(server: Running) -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hyperdx.cli",
            "local",
            "--data-dir",
            str(server.data_dir),
            "--http-port",
            "0",
            "--grpc-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert f"in use by process {server.proc.pid}" in proc.stderr
    assert time.monotonic() - t0 < 15
    # the first instance is unaffected: state file intact, still answering
    assert read_state(server.data_dir) == server.state
    assert server.rows("SELECT 1 AS ok") == [{"ok": 1}]


def test_kill_9_after_200_loses_nothing_then_clean_stop(tmp_path: Path) -> None:
    running = start_local(tmp_path)
    exporter = OTLPLogExporter(
        endpoint=f"{running.http_url}/v1/logs",
        headers={"authorization": running.state.api_key},
    )
    logger_provider = LoggerProvider(resource=Resource.create({"service.name": "durable"}))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    log = otel_logger(logger_provider, "durable-test")
    for i in range(5):
        log.info("record %d", i)  # SimpleLogRecordProcessor: returns after the 200
    os.kill(running.proc.pid, signal.SIGKILL)
    first_out, _ = running.proc.communicate(timeout=10)
    logger_provider.shutdown()
    # first start: the generated key is printed once, in the line that configures the SDK
    assert "Generated an ingestion key" in first_out
    assert f"  export HYPERDX_API_KEY={running.state.api_key}\n" in first_out
    assert f"  export OTEL_EXPORTER_OTLP_ENDPOINT={running.http_url}\n" in first_out

    again = start_local(tmp_path)
    assert again.state.api_key == running.state.api_key  # key kept across restarts
    bodies = again.rows("SELECT Body FROM otel_logs WHERE ServiceName = 'durable' ORDER BY Body")
    assert bodies == [{"Body": f"record {i}"} for i in range(5)]

    code, out, _ = stop_local(again)
    assert code == 0
    assert "hyperdx local: stopping" in out
    assert f"export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{again.state.http_port}" in out
    assert 'export HYPERDX_API_KEY="$(cat ' in out  # a kept key is not printed again
    assert running.state.api_key not in out
    assert not (tmp_path / STATE_FILE).exists()
    # with no server running the CLI opens the directory itself
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hyperdx.cli",
            "sql",
            "--json",
            "--data-dir",
            str(tmp_path),
            "SELECT count() AS n FROM otel_logs",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"n": 5}]


def test_requests_journaled_before_a_kill_are_stored_at_the_next_start(tmp_path: Path) -> None:
    """What a killed server had answered but not yet stored is in its journal; the next
    `hyperdx local` stores it before serving, and says so."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from hyperdx.local.journal import Journal
    from hyperdx.local.log_block import log_tables
    from hyperdx.local.store import JOURNAL_DIR, NATIVE

    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    service = resource_logs.resource.attributes.add()
    service.key, service.value.string_value = "service.name", "journaled"
    for i in range(3):
        record = resource_logs.scope_logs.add().log_records.add()
        record.time_unix_nano = time.time_ns()
        record.body.string_value = f"answered {i}"
    journal = Journal(tmp_path / JOURNAL_DIR)
    journal.start()
    journal.append("otel_logs", NATIVE, log_tables(request)["otel_logs"].payload)
    journal.close()  # what a kill leaves: the segment, no insert

    running = start_local(tmp_path)
    bodies = running.rows(
        "SELECT Body FROM otel_logs WHERE ServiceName = 'journaled' ORDER BY Body"
    )
    code, _, err = stop_local(running)
    assert bodies == [{"Body": f"answered {i}"} for i in range(3)]
    assert code == 0
    assert "stored the requests journaled before the last stop (1 for otel_logs)" in err
    assert list((tmp_path / JOURNAL_DIR).glob("*.journal")) == []


def test_api_key_from_environment(tmp_path: Path) -> None:
    running = start_local(tmp_path, env={"HYPERDX_LOCAL_API_KEY": "local-test-key"})
    try:
        assert running.state.api_key == "local-test-key"
        assert running.rows("SELECT 2 AS two") == [{"two": 2}]
    finally:
        code, out, _ = stop_local(running, signal.SIGINT)  # Ctrl-C stops as cleanly as TERM
    assert code == 0
    assert "hyperdx local: stopping" in out
    assert not (tmp_path / STATE_FILE).exists()
    assert 'export HYPERDX_API_KEY="$HYPERDX_LOCAL_API_KEY"' in out
    assert "local-test-key" not in out
    assert not (tmp_path / "api-key").exists()


def test_kill_9_during_concurrent_exports_keeps_every_acknowledged_batch(tmp_path: Path) -> None:
    """Four exporters (HTTP/protobuf with gzip) send 200-record batches at once; the server
    is killed mid-stream. After a restart every batch that got a 200 is there in full, and
    no batch is there in part."""
    import threading

    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    running = start_local(tmp_path)
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "crash"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    log = otel_logger(provider, "crash-test")
    threads_n, batches_n, size = 4, 10, 200
    for t in range(threads_n):
        for b in range(batches_n):
            for i in range(size):
                log.info("t%d-b%d %d", t, b, i)
    records = list(memory.get_finished_logs())
    assert len(records) == threads_n * batches_n * size
    acked: list[str] = []
    lock = threading.Lock()

    def send(t: int) -> None:
        exporter = OTLPLogExporter(
            endpoint=f"{running.http_url}/v1/logs",
            headers={"authorization": running.state.api_key},
            compression=Compression.Gzip,
            timeout=2,
        )
        mine = records[t * batches_n * size : (t + 1) * batches_n * size]
        for b in range(batches_n):
            batch = mine[b * size : (b + 1) * size]
            if exporter.export(batch).name != "SUCCESS":
                return
            with lock:
                acked.append(f"t{t}-b{b}")

    threads = [threading.Thread(target=send, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acked) < threads_n * batches_n // 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(running.proc.pid, signal.SIGKILL)
    running.proc.wait(timeout=10)
    for thread in threads:
        thread.join(timeout=60)
    provider.shutdown()
    assert threads_n * batches_n // 3 <= len(acked) < threads_n * batches_n

    again = start_local(tmp_path)
    try:
        stored = {
            r["batch"]: r["n"]
            for r in again.rows(
                "SELECT splitByChar(' ', Body)[1] AS batch, count() AS n FROM otel_logs"
                " WHERE ServiceName = 'crash' GROUP BY batch"
            )
        }
    finally:
        stop_local(again)
    assert set(acked) <= set(stored), sorted(set(acked) - set(stored))
    assert set(stored.values()) == {size}  # whole batches only


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("::", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_loopback_rule_for_the_query_endpoint(host: str, loopback: bool) -> None:
    from hyperdx.local.server import is_loopback

    assert is_loopback(host) is loopback
