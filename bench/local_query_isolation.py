"""Does a heavy query on `hyperdx local`'s ClickHouse port slow ingestion or the CLI?

Starts `hyperdx local` on free ports, then measures the latency of single-record OTLP/JSON
log exports (sequential, one in flight) and of a light query on each read path:

1. idle;
2. while one heavy query (CPU-bound scan, stopped by its own max_execution_time) runs on the
   ClickHouse HTTP port;
3. while two heavy queries run (both read sessions busy): light ClickHouse-port queries now
   queue, the CLI's query endpoint and ingestion should not.

    .venv/bin/python bench/local_query_isolation.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HEAVY = "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) % 7 = 3"


def call(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start(tmp: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hyperdx.cli", "local", "--data-dir", str(tmp)]
        + ["--http-port", "0", "--grpc-port", "0", "--clickhouse-port", "0", "--ui-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    info: dict[str, Any] = {}
    for line in proc.stdout:
        if "OTLP/HTTP" in line:
            info["otlp"] = line.split()[1]
        if "ClickHouse HTTP" in line:
            info["ch"] = line.split()[2]
        if "clickhouse_connect.get_client" in line:
            break
    info["key"] = (tmp / "api-key").read_text().strip()
    state = json.loads((tmp / "hyperdx-local.json").read_text())
    info["query"] = f"http://127.0.0.1:{state['http_port']}/hyperdx/v1/query"
    return proc, info


def log_body(i: int) -> bytes:
    record = {"timeUnixNano": str(time.time_ns()), "body": {"stringValue": f"probe {i}"}}
    return json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}).encode()


def sample(info: dict[str, Any], seconds: float) -> dict[str, list[float]]:
    """Each path sampled by its own thread (one request in flight per path), so a path that
    waits does not hold back the others' samples."""
    key = info["key"]
    paths: dict[str, tuple[str, Any, dict[str, str]]] = {
        "ingest": (
            f"{info['otlp']}/v1/logs",
            log_body,
            {"Content-Type": "application/json", "authorization": key},
        ),
        "clickhouse": (
            info["ch"] + "/",
            lambda i: b"SELECT count() FROM otel_logs",
            {"X-ClickHouse-Key": key},
        ),
        "cli": (
            info["query"],
            lambda i: json.dumps({"sql": "SELECT count() AS n FROM otel_logs"}).encode(),
            {"Content-Type": "application/json", "authorization": key},
        ),
    }
    out: dict[str, list[float]] = {name: [] for name in paths}
    deadline = time.monotonic() + seconds

    def loop(name: str) -> None:
        url, body, headers = paths[name]
        i = 0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            status, text = call(url, body(i), headers)
            assert status == 200, (name, status, text[:200])
            out[name].append((time.monotonic() - t0) * 1000)
            i += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=loop, args=(name,)) for name in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def heavy(info: dict[str, Any], seconds: int, results: list[tuple[int, float]]) -> None:
    t0 = time.monotonic()
    status, _ = call(
        f"{info['ch']}/?max_execution_time={seconds}",
        HEAVY.encode(),
        {"X-ClickHouse-Key": info["key"]},
    )
    results.append((status, time.monotonic() - t0))


def summary(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    p50 = statistics.median(values)
    return f"n={len(values):3d} p50={p50:6.1f} p95={p95:7.1f} max={values[-1]:7.1f}"


def raw_chdb(seconds: int) -> None:
    """The engine alone: one-row streaming inserts on one session while a heavy query runs
    on another session of the same directory (as Store does), no HTTP in between."""
    from chdb.session import Session

    with tempfile.TemporaryDirectory() as tmp:
        reader = Session(f"{tmp}?readonly=2&max_threads={max(1, (os.cpu_count() or 2) // 2)}")
        writer = Session(tmp)
        writer.query("CREATE TABLE t (x String) ENGINE = MergeTree ORDER BY x", "CSV")

        def insert() -> float:
            t0 = time.monotonic()
            with writer.send_insert("INSERT INTO t", "JSONEachRow") as ins:
                ins.append('{"x": "a"}\n')
                ins.finish()
            return (time.monotonic() - t0) * 1000

        idle = [insert() for _ in range(30)]
        done = threading.Event()

        def run_heavy() -> None:
            with contextlib.suppress(RuntimeError):  # TIMEOUT_EXCEEDED, as intended
                reader.query(f"{HEAVY} SETTINGS max_execution_time={seconds}", "CSV")
            done.set()

        threading.Thread(target=run_heavy).start()
        time.sleep(0.3)
        during = []
        while not done.is_set():
            during.append(insert())
            time.sleep(0.05)
        print("raw chDB one-row insert, ms")
        print(f"  idle          {summary(idle)}")
        print(f"  during heavy  {summary(during)}")
        writer.close()
        reader.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    raw_chdb(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        proc, info = start(Path(tmp))
        try:
            sample(info, 1.0)  # warm-up (first read session open, first parts)
            print(f"load average: {os.getloadavg()}")
            for heavy_count in (0, 1, 2):
                results: list[tuple[int, float]] = []
                threads = [
                    threading.Thread(target=heavy, args=(info, args.seconds, results))
                    for _ in range(heavy_count)
                ]
                for thread in threads:
                    thread.start()
                time.sleep(0.3 if heavy_count else 0)
                got = sample(info, args.seconds - 1.0)
                for thread in threads:
                    thread.join()
                print(
                    f"\n{heavy_count} heavy quer{'y' if heavy_count == 1 else 'ies'} running "
                    f"(heavy: {[(s, round(t, 1)) for s, t in results]})"
                )
                for name, values in got.items():
                    print(f"  {name:10s} ms  {summary(values)}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
