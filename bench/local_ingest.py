"""Load benchmark of `hyperdx local`'s ingestion: OTLP exporters posting as fast as they can.

Starts ``hyperdx local`` (a subprocess, fresh data directory), then runs ``--concurrency``
exporters for ``--seconds``, each posting ``--batch``-item requests (protobuf + gzip, the
OTLP/HTTP exporters' default; or gRPC with gzip) back to back. A 503 / UNAVAILABLE is
retried after the delay the server names (Retry-After / RetryInfo), as the OpenTelemetry
exporters do. While it runs, the server's RSS is sampled and, with ``--probe-queries``, a
query is timed every second through the query endpoint (what ``hyperdx sql`` uses).

Reports acknowledged items/s, latency p50/p99/max of accepted requests and of all answers,
answers by status, peak RSS, and table rows versus acknowledged items (must be equal).
``--json`` prints the result as one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

TABLES = {"logs": "otel_logs", "traces": "otel_traces"}
GRPC_METHODS = {
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
}


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


_RESOURCE = [
    _kv("service.name", "ingest-bench"),
    _kv("telemetry.sdk.language", "python"),
    _kv("telemetry.sdk.name", "opentelemetry"),
    _kv("telemetry.sdk.version", "1.38.0"),
    _kv("host.name", "bench-host"),
    _kv("process.pid", 4242),
]


def log_request(count: int, seed: int) -> bytes:
    """A request like the Python SDK's logging handler sends (severity set, scalar attrs)."""
    rng = random.Random(seed)
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(_RESOURCE)
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "app.views"
    now = time.time_ns()
    for index in range(count):
        record = scope_logs.log_records.add()
        record.time_unix_nano = record.observed_time_unix_nano = now + index
        record.severity_number, record.severity_text = rng.choice(
            [(9, "INFO"), (9, "INFO"), (13, "WARN"), (17, "ERROR")]
        )
        record.body.string_value = (
            f"GET /api/items/{rng.randrange(10_000)} {rng.choice([200, 200, 404, 500])} "
            f"in {rng.randrange(300)} ms user=u{rng.randrange(500)}"
        )
        record.trace_id = rng.randbytes(16)
        record.span_id = rng.randbytes(8)
        record.attributes.extend(
            [
                _kv("code.filepath", "app/views.py"),
                _kv("code.function", "list_items"),
                _kv("code.lineno", 40 + index % 20),
                _kv("http.route", "/api/items/{id}"),
            ]
        )
    return request.SerializeToString()


def span_request(count: int, seed: int) -> bytes:
    """A request of server/client spans like an instrumented web app's."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(_RESOURCE)
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "opentelemetry.instrumentation.flask"
    now = time.time_ns()
    trace_id = rng.randbytes(16)
    for index in range(count):
        if index % 8 == 0:
            trace_id = rng.randbytes(16)
        span = scope_spans.spans.add()
        span.trace_id = trace_id
        span.span_id = rng.randbytes(8)
        span.parent_span_id = rng.randbytes(8) if index % 8 else b""
        span.name = "GET /api/items/{id}"
        span.kind = 2 if index % 8 == 0 else 3
        span.start_time_unix_nano = now + index * 1000
        span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(100_000, 50_000_000)
        span.attributes.extend(
            [
                _kv("http.request.method", "GET"),
                _kv("http.route", "/api/items/{id}"),
                _kv("http.response.status_code", rng.choice([200, 200, 404])),
                _kv("url.path", f"/api/items/{rng.randrange(10_000)}"),
            ]
        )
    return request.SerializeToString()


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.accepted_latency: list[float] = []
        self.all_latency: list[float] = []
        self.acked = 0
        self.query_latency: list[float] = []
        self.rss_peak_kb = 0
        self.anon_peak_kb = 0
        self.memory_trace: list[dict[str, float]] = []

    async def answered(
        self, status: str, ok: bool, start: float, batch: int, delay: float, until: float
    ) -> None:
        """Count one answer (``ok``: ``batch`` items acknowledged), then wait the retry
        ``delay`` it asked for, if any, within the run: the same for every load client."""
        elapsed = time.monotonic() - start
        self.statuses[status] += 1
        self.all_latency.append(elapsed)
        if ok:
            self.accepted_latency.append(elapsed)
            self.acked += batch
        elif delay:
            await asyncio.sleep(min(delay, max(0.0, until - time.monotonic())))


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Pacer:
    """Offers requests on a fixed schedule (``--rate``): one every ``interval`` seconds per
    exporter, so two servers (or protocols) get the same offered load and the same background
    merges. A request that is late starts at once; the schedule does not catch up in bursts
    beyond that. ``interval`` 0 means back to back (the default)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # exporters start spread over one interval, not all in the same instant
        self.next = time.monotonic() + random.uniform(0.0, interval)

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self.next > now:
            await asyncio.sleep(self.next - now)
        self.next = max(self.next + self.interval, time.monotonic() - self.interval)


async def http_exporter(
    url: str,
    key: str,
    bodies: list[bytes],
    batch: int,
    until: float,
    tally: Tally,
    pacer: Pacer | None = None,
) -> None:
    import aiohttp

    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "gzip",
        "Authorization": key,
    }
    timeout = aiohttp.ClientTimeout(total=10)  # the exporters' default timeout
    pacer = pacer or Pacer(0.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        turn = random.randrange(len(bodies))
        while time.monotonic() < until:
            await pacer.wait()
            body = bodies[turn % len(bodies)]
            turn += 1
            start = time.monotonic()
            retry_after = 0.0
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = str(response.status)
                    retry_after = float(response.headers.get("Retry-After", "0") or 0)
            except asyncio.TimeoutError:
                status = "timeout"
            except aiohttp.ClientError as error:
                status = type(error).__name__
            await tally.answered(status, status == "200", start, batch, retry_after, until)


async def grpc_exporter(
    target: str,
    key: str,
    signal: str,
    bodies: list[bytes],
    batch: int,
    until: float,
    tally: Tally,
    compress: bool = True,
    pacer: Pacer | None = None,
) -> None:
    import grpc
    from google.rpc.error_details_pb2 import RetryInfo

    compression = grpc.Compression.Gzip if compress else grpc.Compression.NoCompression
    async with grpc.aio.insecure_channel(target, compression=compression) as channel:
        call = channel.unary_unary(
            GRPC_METHODS[signal],
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        pacer = pacer or Pacer(0.0)
        turn = random.randrange(len(bodies))
        while time.monotonic() < until:
            await pacer.wait()
            body = bodies[turn % len(bodies)]
            turn += 1
            start = time.monotonic()
            delay = 0.0
            try:
                await call(body, metadata=(("authorization", key),), timeout=10)
                status = "OK"
            except grpc.aio.AioRpcError as error:
                status = error.code().name
                for name, value in error.trailing_metadata() or ():
                    if name == "google.rpc.retryinfo-bin" and isinstance(value, bytes):
                        info = RetryInfo.FromString(value)
                        delay = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
                if status == "RESOURCE_EXHAUSTED" and not delay:
                    delay = 1.0
            await tally.answered(status, status == "OK", start, batch, delay, until)


class H2GrpcCall:
    """One HTTP/2 connection sending unary gRPC calls in sequence, with the bytes a gzip gRPC
    exporter sends, but each message compressed once in advance (as the HTTP client's
    bodies are): the load client then costs about what the HTTP one does, so gRPC's figure
    measures the server rather than grpc core's gzip in the client."""

    def __init__(self, host: str, port: int, key: str, path: str) -> None:
        self.host, self.port = host, port
        self.headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", f"{host}:{port}"),
            ("te", "trailers"),
            ("content-type", "application/grpc"),
            ("grpc-encoding", "gzip"),
            ("grpc-accept-encoding", "identity,deflate,gzip"),
            ("grpc-timeout", "10S"),
            ("user-agent", "ingest-bench-h2"),
            ("authorization", key),
        ]
        self.conn: Any = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        import h2.config
        import h2.connection

        self.close()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        await self._flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.conn = self.reader = self.writer = None

    async def _flush(self) -> None:
        assert self.writer is not None
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def call(self, message: bytes) -> tuple[str, float]:
        """Send one framed message; answer (status name, RetryInfo delay in seconds)."""
        import h2.errors
        import h2.events

        if self.conn is None:
            await self.connect()
        assert self.reader is not None
        conn = self.conn
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, self.headers)
        answer: dict[str, str] = {}
        sent = 0
        ended = False
        while not ended:
            # send what the stream's and the connection's windows allow, then read (window
            # updates, the answer, pings and settings h2 acknowledges itself)
            window = conn.local_flow_control_window(stream_id) if sent < len(message) else 0
            while window > 0 and sent < len(message):
                size = min(window, conn.max_outbound_frame_size, len(message) - sent)
                conn.send_data(
                    stream_id, message[sent : sent + size], end_stream=sent + size == len(message)
                )
                sent += size
                window -= size
            await self._flush()
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionResetError("server closed the connection")
            for event in conn.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    if event.stream_id == stream_id:
                        answer.update((str(k), str(v)) for k, v in event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    ended = True
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                    ended = True
                    answer.setdefault("grpc-status", "13")  # INTERNAL, as grpc maps a reset
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.close()
                    raise ConnectionResetError(f"GOAWAY {event.error_code!r}")
        if sent < len(message):  # answered before the whole request was sent: cancel the rest
            conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        await self._flush()
        return _grpc_answer(answer)


def _grpc_answer(headers: dict[str, str]) -> tuple[str, float]:
    """Status name (as grpcio's ``StatusCode`` names it) and RetryInfo delay of an answer."""
    import grpc
    from google.rpc.error_details_pb2 import RetryInfo

    if "grpc-status" not in headers:
        return f"HTTP_{headers.get(':status', '?')}", 0.0
    names = {code.value[0]: code.name for code in grpc.StatusCode}
    status = names.get(int(headers["grpc-status"]), f"code {headers['grpc-status']}")
    delay = 0.0
    encoded = headers.get("google.rpc.retryinfo-bin")
    if encoded:
        info = RetryInfo.FromString(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
        delay = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    if status == "RESOURCE_EXHAUSTED" and not delay:
        delay = 1.0
    return status, delay


async def h2_grpc_exporter(
    host: str,
    port: int,
    key: str,
    signal: str,
    bodies: list[bytes],
    batch: int,
    until: float,
    tally: Tally,
    pacer: Pacer | None = None,
) -> None:
    """The gRPC exporter loop of :func:`grpc_exporter` over :class:`H2GrpcCall`: ``bodies``
    are gzipped already and sent with gRPC's 5-byte prefix, the compressed flag set."""
    messages = [b"\x01" + len(body).to_bytes(4, "big") + body for body in bodies]
    channel = H2GrpcCall(host, port, key, GRPC_METHODS[signal])
    pacer = pacer or Pacer(0.0)
    turn = random.randrange(len(messages))
    try:
        while time.monotonic() < until:
            await pacer.wait()
            message = messages[turn % len(messages)]
            turn += 1
            start = time.monotonic()
            delay = 0.0
            try:
                status, delay = await asyncio.wait_for(channel.call(message), timeout=10)
            except asyncio.TimeoutError:
                status = "DEADLINE_EXCEEDED"
                channel.close()  # the stream is left half done: start a fresh connection
            except (OSError, ConnectionError) as error:
                status = type(error).__name__
                channel.close()
                delay = 0.1  # do not spin on a server that is gone
            await tally.answered(status, status == "OK", start, batch, delay, until)
    finally:
        channel.close()


def query(state: Any, sql: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        state.query_url,
        data=json.dumps({"sql": sql}).encode(),
        headers={"Authorization": state.api_key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        rows: list[dict[str, Any]] = json.loads(response.read())["rows"]
        return rows


async def probe_queries(state: Any, table: str, until: float, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    sql = f"SELECT count() AS n, max(Timestamp) AS last FROM {table}"
    while time.monotonic() < until:
        start = time.monotonic()
        await loop.run_in_executor(None, query, state, sql)
        tally.query_latency.append(time.monotonic() - start)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - start)))


async def sample_rss(pid: int, until: float, tally: Tally) -> None:
    while time.monotonic() < until + 1.0:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    tally.rss_peak_kb = max(tally.rss_peak_kb, int(line.split()[1]))
                elif line.startswith("RssAnon:"):  # RSS less chDB's mapped library pages
                    tally.anon_peak_kb = max(tally.anon_peak_kb, int(line.split()[1]))
        except OSError:
            return
        await asyncio.sleep(0.2)


# One statement per sample: ClickHouse's own accounting next to the process's RSS.
_MEMORY_SQL = (
    "SELECT (SELECT value FROM system.metrics WHERE metric = 'MemoryTracking') AS tracked, "
    "(SELECT count() FROM system.merges) AS merges, "
    "(SELECT sum(memory_usage) FROM system.merges) AS merges_memory, "
    "(SELECT max(total_size_bytes_compressed) FROM system.merges) AS merge_bytes, "
    "(SELECT sum(rows_read) FROM system.merges) AS merges_rows_read, "
    "(SELECT count() FROM system.parts WHERE active AND table = 'otel_logs') AS log_parts, "
    # chDB's allocator: resident pages against what is allocated (the rest is its caches)
    "(SELECT toUInt64(extract(stats, 'resident: (\\\\d+)')) FROM system.jemalloc_stats) "
    "AS je_resident, "
    "(SELECT toUInt64(extract(stats, 'Allocated: (\\\\d+)')) FROM system.jemalloc_stats) "
    "AS je_allocated"
)


def _proc_memory_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            out[name] = int(value.split()[0])
    return out


async def trace_memory(
    state: Any, pid: int, until: float, tally: Tally, interval: float = 0.5
) -> None:
    """Every ``interval`` s: RSS (anon / file) beside ClickHouse's MemoryTracking and the
    running merges (count, their tracked memory, rows read), through the query endpoint."""
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    while time.monotonic() < until + 1.0:
        began = time.monotonic()
        try:
            row = (await loop.run_in_executor(None, query, state, _MEMORY_SQL))[0]
            mem = _proc_memory_kb(pid)
        except (OSError, KeyError, IndexError, ValueError):
            return
        mb = 1 << 20
        tally.memory_trace.append(
            {
                "t": round(began - start, 1),
                "rss": round(mem["VmRSS"] / 1024),
                "anon": round(mem["RssAnon"] / 1024),
                "file": round(mem["RssFile"] / 1024),
                "tracked": round(int(row["tracked"]) / mb),
                "untracked_anon": round(mem["RssAnon"] / 1024 - int(row["tracked"]) / mb),
                "merges": int(row["merges"]),
                "merges_mb": round(int(row["merges_memory"] or 0) / mb),
                "merge_max_mb_on_disk": round(int(row["merge_bytes"] or 0) / mb),
                "merges_rows_read": int(row["merges_rows_read"] or 0),
                "log_parts": int(row["log_parts"]),
                "je_resident": round(int(row["je_resident"]) / mb),
                "je_allocated": round(int(row["je_allocated"]) / mb),
                # anonymous memory outside chDB's allocator: Python, glibc heaps, stacks
                "non_je_anon": round(mem["RssAnon"] / 1024 - int(row["je_resident"]) / mb),
            }
        )
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))


def memory_summary(trace: list[dict[str, float]]) -> dict[str, Any]:
    """The sample at the RSS peak, and each series' maximum."""
    if not trace:
        return {}
    peak = max(trace, key=lambda sample: sample["rss"])
    keys = [k for k in trace[0] if k != "t"]
    return {
        "at_rss_peak": peak,
        "max": {k: max(sample[k] for sample in trace) for k in keys},
        "samples": len(trace),
    }


async def drive(args: argparse.Namespace, state: Any, pid: int) -> Tally:
    make = log_request if args.signal == "logs" else span_request
    bodies = [gzip.compress(make(args.batch, seed), 6) for seed in range(args.distinct)]
    tally = Tally()
    until = time.monotonic() + args.seconds
    interval = args.concurrency * args.batch / args.rate if args.rate else 0.0
    if args.protocol == "http":
        url = f"http://{state.host}:{state.http_port}/v1/{args.signal}"
        workers = [
            http_exporter(url, state.api_key, bodies, args.batch, until, tally, Pacer(interval))
            for _ in range(args.concurrency)
        ]
    elif args.grpc_client == "h2":
        workers = [
            h2_grpc_exporter(
                state.host,
                state.grpc_port,
                state.api_key,
                args.signal,
                bodies,
                args.batch,
                until,
                tally,
                Pacer(interval),
            )
            for _ in range(args.concurrency)
        ]
    else:
        raw = [gzip.decompress(body) for body in bodies]  # grpc compresses itself
        target = f"{state.host}:{state.grpc_port}"
        workers = [
            grpc_exporter(
                target,
                state.api_key,
                args.signal,
                raw,
                args.batch,
                until,
                tally,
                args.grpc_compression == "gzip",
                Pacer(interval),
            )
            for _ in range(args.concurrency)
        ]
    extra = [sample_rss(pid, until, tally)]
    if args.probe_queries:
        extra.append(probe_queries(state, TABLES[args.signal], until, tally))
    if args.memory_trace:
        extra.append(trace_memory(state, pid, until, tally))
    await asyncio.gather(*workers, *extra)
    return tally


# Python 3.11 threads all carry the process's name in /proc/<pid>/task/*/comm; this start-up
# gives each its Python name (less "hyperdx-"), so the per-thread CPU tells the gRPC poller,
# its workers, the HTTP loop and the receiver's workers apart from each other and from chDB's.
_NAMED_THREADS = """
import ctypes, runpy, sys, threading
_prctl = ctypes.CDLL(None).prctl
_run = threading.Thread.run
def _named_run(self):
    _prctl(15, self.name.removeprefix("hyperdx-").encode()[:15], 0, 0, 0)
    _run(self)
threading.Thread.run = _named_run
sys.argv.pop(0)  # argv: the module to run, then its arguments
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def start_server(data_dir: Path, name_threads: bool = False) -> tuple[subprocess.Popen[str], Any]:
    from hyperdx.local.client import read_state
    from hyperdx.local.store import STATE_FILE

    command = [sys.executable, "-m", "hyperdx.cli", "local"]
    command += ["--data-dir", str(data_dir), "--http-port", "0", "--grpc-port", "0"]
    help_text = subprocess.run(
        [*command[:4], "--help"], capture_output=True, text=True, check=False
    ).stdout
    for option in ("--clickhouse-port", "--ui-port"):  # optional listeners: any free port
        if option in help_text:
            command += [option, "0"]
    if name_threads:
        command = [sys.executable, "-c", _NAMED_THREADS, *command[2:]]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (data_dir / STATE_FILE).exists():
            state = read_state(data_dir)
            if state is not None and state.pid == proc.pid:
                return proc, state
        if proc.poll() is not None:
            raise SystemExit(f"hyperdx local exited {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("hyperdx local did not start within 60 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads, chDB's included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sys_cpu_seconds(pid: int) -> float:
    """Kernel CPU time of a process: mostly chDB creating (and removing) part files. On a
    journal-less ext4 (this machine) each file created scans the inode table past recently
    deleted inodes, so it depends on every other process's file churn as much as ours."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def rss_now(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of ``pid`` in MB."""
    wanted = ("VmRSS", "RssAnon", "RssFile")
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in wanted:
            out[name] = int(value.split()[0]) // 1024
    return out


def thread_cpu(pid: int) -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds per thread, keyed ``name#tid``."""
    out: dict[str, tuple[float, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            head, rest = (task / "stat").read_text().rsplit(")", 1)
        except OSError:  # the thread ended meanwhile
            continue
        name = head.split("(", 1)[1]
        fields = rest.split()
        out[f"{name}#{task.name}"] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def _thread_group(key: str) -> str:
    """A pool's threads under one name: ``grpc_3#123`` -> ``grpc_*``, ``Thread-2 (_serve)``
    -> ``Thread-* (_serve)``; chDB's pools already share their names."""
    name = key.split("#", 1)[0]
    name = re.sub(r"_\d+$", "_*", name)
    return re.sub(r"^Thread-\d+", "Thread-*", name)


def thread_cpu_delta(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, dict[str, float]]:
    """CPU seconds (``user``, ``sys``) spent per thread group between two :func:`thread_cpu`
    snapshots, largest first; groups under 0.05 s are left out."""
    spent: dict[str, list[float]] = {}
    for key, (user, system) in after.items():
        was_user, was_system = before.get(key, (0.0, 0.0))
        total = spent.setdefault(_thread_group(key), [0.0, 0.0])
        total[0] += user - was_user
        total[1] += system - was_system
    return {
        name: {"user": round(user, 2), "sys": round(system, 2)}
        for name, (user, system) in sorted(spent.items(), key=lambda kv: -sum(kv[1]))
        if user + system >= 0.05
    }


def _block_request_type(signal_info: Any) -> Any:
    """The request type the receiver decodes ``signal_info``'s OTLP/protobuf into when its
    sink takes Native blocks (raw attributes), as the server picks it for chDB."""
    from hyperdx.local import wire
    from hyperdx.local.store import ChdbSink

    return wire.request_type(signal_info, ChdbSink(store=None), wire.PROTOBUF)  # type: ignore[arg-type]


def host_reference(batch: int = 512, rounds: int = 7) -> float:
    """CPU microseconds per log record of the receiver's mapping (decoded request -> Native
    block), in the load client's process while no server runs (before the load and after):
    the median of ``rounds`` timings of 8 requests. The machine is shared and its speed
    drifts: on 2026-11-30 the same code's mapping took 4.3 us per record at 09:25 UTC and
    7.9 at 12:00, and one-second samples at 14:53 flipped between ~4.5 and ~9 (another
    tenant on the same physical core, it seems). So every run reports both beside its
    throughput: a coarse sign of the speed it ran at, not a calibration."""
    from hyperdx.local import wire

    signal_info = wire.SIGNALS["/v1/logs"]
    assert signal_info.to_blocks is not None
    raw = wire.decode(log_request(batch, 1), wire.PROTOBUF, _block_request_type(signal_info))
    to_blocks = signal_info.to_blocks
    to_blocks(raw)  # warm: the first call builds the request type's caches
    timings = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(8):
            to_blocks(raw)
        timings.append((time.process_time() - start) / (8 * batch) * 1e6)
    return round(statistics.median(timings), 2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    reference = host_reference()
    data_dir = Path(tempfile.mkdtemp(prefix="hyperdx-ingest-bench-"))
    proc, state = start_server(data_dir, args.name_threads)
    try:
        rss_start = rss_now(proc.pid)
        load_before = os.getloadavg()
        cpu_before = cpu_seconds(proc.pid)
        sys_before = sys_cpu_seconds(proc.pid)
        threads_before = thread_cpu(proc.pid)
        client_before = time.process_time()
        tally = asyncio.run(drive(args, state, proc.pid))
        client_cpu = time.process_time() - client_before
        server_cpu = cpu_seconds(proc.pid) - cpu_before
        server_sys = sys_cpu_seconds(proc.pid) - sys_before
        threads = thread_cpu_delta(threads_before, thread_cpu(proc.pid))
        load_after = os.getloadavg()
        rss_end = rss_now(proc.pid)
        time.sleep(args.drain)  # merges still running on what was stored: their CPU counts too
        drained_cpu = cpu_seconds(proc.pid) - cpu_before
        rows = int(query(state, f"SELECT count() AS n FROM {TABLES[args.signal]}")[0]["n"])
        # otel_logs keeps each insert's block number (enable_block_number_column): how many
        # chDB inserts stored the run, i.e. how well the writer grouped requests
        inserts = (
            int(query(state, "SELECT uniqExact(_block_number) AS n FROM otel_logs")[0]["n"])
            if args.signal == "logs"
            else None
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    reference_after = host_reference()
    accepted = tally.accepted_latency
    return {
        "protocol": args.protocol,
        "grpc_compression": args.grpc_compression if args.protocol == "grpc" else None,
        "grpc_client": args.grpc_client if args.protocol == "grpc" else None,
        "signal": args.signal,
        "concurrency": args.concurrency,
        "offered_rate": args.rate or None,
        "batch": args.batch,
        "seconds": args.seconds,
        "items_per_s": round(tally.acked / args.seconds),
        "host_mapping_us_per_record": [reference, reference_after],  # before, after
        # machine-share-independent cost: what 2 idle cores would give, less the client's share
        "server_cpu_s": round(server_cpu, 2),
        "server_sys_cpu_s": round(server_sys, 2),
        "items_per_server_cpu_s": round(tally.acked / server_cpu) if server_cpu else 0,
        "server_cpu_s_by_thread": threads,
        "server_cpu_ms_per_1k_items": (
            round(server_cpu / tally.acked * 1e6, 1) if tally.acked else 0
        ),
        # the load client shares the cores: gRPC's compresses every request itself (in grpc's
        # core), the HTTP client posts pre-gzipped bodies, so its share differs by protocol
        "client_cpu_s": round(client_cpu, 2),
        "drain_s": args.drain,
        "items_per_server_cpu_s_with_drain": round(tally.acked / drained_cpu) if drained_cpu else 0,
        "acked_items": tally.acked,
        "rows": rows,
        "rows_equal_acked": rows == tally.acked,
        "inserts": inserts,
        "rows_per_insert": round(rows / inserts) if inserts else None,
        "answers": dict(tally.statuses),
        "accepted_ms": {
            "p50": round(percentile(accepted, 0.5) * 1000),
            "p99": round(percentile(accepted, 0.99) * 1000),
            "max": round(max(accepted, default=0) * 1000),
        },
        "all_answers_max_ms": round(max(tally.all_latency, default=0) * 1000),
        "rss_peak_mb": round(tally.rss_peak_kb / 1024),
        "rss_anon_peak_mb": round(tally.anon_peak_kb / 1024),
        "rss_mb_start_end": [rss_start, rss_end],
        "memory": memory_summary(tally.memory_trace),
        "memory_trace": tally.memory_trace,
        "query_ms": {
            "count": len(tally.query_latency),
            "p50": round(percentile(tally.query_latency, 0.5) * 1000),
            "max": round(max(tally.query_latency, default=0) * 1000),
        },
        "loadavg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
    }


def components(signal: str, batch: int, rounds: int = 32) -> dict[str, float]:
    """CPU microseconds per item of each server stage, in process (process CPU time, so
    chDB's own threads count; other load on the machine inflates it less than wall time).
    Inserts are grouped 8 requests at a time, as the writer does under load. For logs, both
    routes: the receiver's (decode with raw attributes, Native block) and the dict rows +
    JSONEachRow one (other sinks, and the route before 2026-11-30)."""
    from hyperdx.local import wire
    from hyperdx.local.native import Block
    from hyperdx.local.store import JSON_EACH_ROW, NATIVE, Store, encode_rows

    signal_info = wire.SIGNALS[f"/v1/{signal}"]
    body = gzip.compress((log_request if signal == "logs" else span_request)(batch, 1), 6)
    costs: dict[str, float] = {}

    def timed(name: str, action: Any) -> Any:
        start = time.process_time()
        for _ in range(rounds):
            value = action()
        costs[name] = (time.process_time() - start) / rounds / batch * 1e6
        return value

    data = timed("gunzip", lambda: wire.decompress(body, "gzip", 20 << 20))
    routes: list[tuple[str, str, bytes]] = []
    message = timed(
        "dict route: protobuf decode",
        lambda: wire.decode(data, wire.PROTOBUF, signal_info.request_type),
    )
    tables = timed("dict route: row mapping", lambda: signal_info.to_rows(message))
    table, mapped = next((t, r) for t, r in tables.items() if r)
    payload, _ = timed("dict route: JSON encode", lambda: encode_rows(table, mapped))
    routes.append(("dict route", JSON_EACH_ROW, payload))
    if signal_info.to_blocks is not None:
        kind = _block_request_type(signal_info)
        raw = timed("block route: decode", lambda: wire.decode(data, wire.PROTOBUF, kind))
        to_blocks = signal_info.to_blocks
        blocks = timed("block route: mapping to a Native block", lambda: to_blocks(raw))
        block = blocks[table]
        assert isinstance(block, Block)
        routes.append(("block route", NATIVE, block.payload))
    with tempfile.TemporaryDirectory() as data_dir, Store.open(data_dir) as store:
        for route, fmt, encoded in routes:
            start = time.process_time()
            for _ in range(rounds // 8):
                store._stream(table, [encoded] * 8, fmt)
            costs[f"{route}: chDB insert of {fmt} (8 per insert)"] = (
                (time.process_time() - start) / (rounds // 8 * 8) / batch * 1e6
            )
    for route, _, _ in routes:
        costs[f"{route}: total"] = costs["gunzip"] + sum(
            value for name, value in costs.items() if name.startswith(route + ":")
        )
    return {name: round(value, 1) for name, value in costs.items()}


def stream_overlap(batch: int, requests: int = 8, rounds: int = 6) -> dict[str, Any]:
    """How much of a group commit's wall time streaming hides, in process with real chDB:
    ``requests`` mapped log requests go into one insert, either all handed over at once
    (the writer before 2026-11-29 22:20 UTC) or one every 3 ms (about one request's mapping
    time, as the streaming writer hands them over while the next are mapped). Reports the
    median time from the last request handed over to the insert committed: what every
    request of the insert waits for at the end."""
    from hyperdx.local import wire
    from hyperdx.local.store import Store, encode_rows

    signal_info = wire.SIGNALS["/v1/logs"]
    payloads = []
    for seed in range(requests):
        message = ExportLogsServiceRequest.FromString(log_request(batch, seed))
        payloads.append(encode_rows("otel_logs", signal_info.to_rows(message)["otel_logs"])[0])
    tails: dict[str, list[float]] = {"all at once": [], "one every 3 ms": []}
    with tempfile.TemporaryDirectory() as data_dir, Store.open(data_dir) as store:
        for index in range(2 * rounds):
            name = list(tails)[index % 2]
            marks: list[float] = []

            def feed(marks: list[float] = marks, spaced: bool = name != "all at once") -> Any:
                for payload in payloads:
                    if spaced:
                        time.sleep(0.003)
                    marks.append(time.monotonic())
                    yield payload

            store._stream("otel_logs", feed())
            tails[name].append(time.monotonic() - marks[-1])
    return {
        "rows_per_insert": requests * batch,
        "ms_after_the_last_request": {
            name: round(sorted(values)[len(values) // 2] * 1000, 1)
            for name, values in tails.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--signal", choices=("logs", "traces"), default="logs")
    parser.add_argument(
        "--grpc-compression",
        choices=("gzip", "none"),
        default="gzip",
        help="gRPC only: the client compresses every request itself (the HTTP client posts "
        "pre-gzipped bodies); 'none' leaves that client cost out",
    )
    parser.add_argument(
        "--grpc-client",
        choices=("grpcio", "h2"),
        default="grpcio",
        help="gRPC only: grpcio (gzips every request in grpc core, as real exporters do) or "
        "h2 (the same bytes on the wire, over HTTP/2 with bodies gzipped once in advance, "
        "as the HTTP client posts them); h2 always sends gzip",
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offered items/s over all exporters, each sending on a fixed schedule (0: as "
        "fast as answered); the same rate makes protocols' or trees' CPU comparable",
    )
    parser.add_argument(
        "--name-threads",
        action="store_true",
        help="start the server with each Python thread's name in /proc (see _NAMED_THREADS), "
        "so server_cpu_s_by_thread tells the Python threads apart",
    )
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--distinct", type=int, default=8, help="distinct request bodies")
    parser.add_argument("--probe-queries", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--memory-trace",
        metavar="FILE",
        help="sample RSS, ClickHouse's MemoryTracking and the running merges every 0.5 s "
        "(through the query endpoint); the samples go to FILE (JSON lines), the RSS peak's "
        "sample and each maximum into the result's 'memory'",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=0.0,
        help="seconds to keep counting server CPU after the load (background merges)",
    )
    parser.add_argument(
        "--components", action="store_true", help="only the per-stage CPU cost, in process"
    )
    parser.add_argument(
        "--stream-overlap",
        action="store_true",
        help="only the writer's streaming measure (in process): see stream_overlap()",
    )
    args = parser.parse_args()
    if args.grpc_client == "h2" and args.grpc_compression != "gzip":
        parser.error(f"--grpc-client h2 sends gzip only, not {args.grpc_compression!r}")
    if args.stream_overlap:
        print(json.dumps(stream_overlap(args.batch)))
        return
    if args.components:
        print(
            json.dumps(
                {"signal": args.signal, "cpu_us_per_item": components(args.signal, args.batch)}
            )
        )
        return
    result = run(args)
    trace = result.pop("memory_trace")
    if args.memory_trace:
        Path(args.memory_trace).write_text("".join(json.dumps(s) + "\n" for s in trace))
    if args.json:
        print(json.dumps(result))
        return
    ms = result["accepted_ms"]
    client = f" ({result['grpc_client']})" if result["grpc_client"] else ""
    print(
        f"{result['protocol']}{client} "
        f"{result['signal']} x{result['concurrency']} "
        f"batch {result['batch']}: {result['items_per_s']:,} items/s "
        "(host reference: mapping "
        f"{' and '.join(map(str, result['host_mapping_us_per_record']))} us per record "
        "before and after) "
        f"({result['items_per_server_cpu_s']:,} per server CPU-second, "
        f"{result['server_cpu_ms_per_1k_items']} server CPU ms per 1k, "
        f"of the server's {result['server_cpu_s']} CPU s {result['server_sys_cpu_s']} in the "
        "kernel, "
        f"client CPU {result['client_cpu_s']} s), "
        f"p50 {ms['p50']} ms p99 {ms['p99']} ms max {ms['max']} ms "
        f"(all answers max {result['all_answers_max_ms']} ms), answers {result['answers']}, "
        f"RSS peak {result['rss_peak_mb']} MB (anon {result['rss_anon_peak_mb']} MB; "
        f"at start, at end {result['rss_mb_start_end']}), "
        f"rows {result['rows']} vs acked "
        f"{result['acked_items']} ({'equal' if result['rows_equal_acked'] else 'DIFFERENT'}), "
        f"rows per insert {result['rows_per_insert']}, "
        f"queries {result['query_ms']}, load {result['loadavg_1m_before_after']}, "
        f"server CPU s by thread {result['server_cpu_s_by_thread']}"
        + (f", memory {result['memory']}" if result["memory"] else "")
    )


if __name__ == "__main__":
    main()
