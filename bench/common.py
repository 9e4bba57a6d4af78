"""Process helpers shared by the benchmarks: CPU pinning, ports, the receiver, RSS."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
NCPU = os.cpu_count() or 1
# The measured process gets CPU 0; the load generator and the receiver share the other one.
APP_CPUS = "0"
AUX_CPUS = "1" if NCPU > 1 else "0"


def pinned(cmd: list[str], cpus: str) -> list[str]:
    if shutil.which("taskset"):
        return ["taskset", "-c", cpus, *cmd]
    return cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str = "/", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"server on 127.0.0.1:{port} not ready after {timeout}s: {last}")


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def receiver(count_items: bool = False) -> Iterator[str]:
    """The counting receiver on the auxiliary CPU; yields its base URL."""
    cmd = [sys.executable, str(BENCH / "receiver.py")]
    if count_items:
        cmd.append("--count-items")
    proc = subprocess.Popen(pinned(cmd, AUX_CPUS), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"receiver did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        stop(proc)


def receiver_stats(base_url: str) -> dict[str, Any]:
    port = int(base_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/stats")
        return dict(json.loads(conn.getresponse().read()))
    finally:
        conn.close()


def receiver_reset(base_url: str) -> None:
    port = int(base_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/reset")
        conn.getresponse().read()
    finally:
        conn.close()


def otel_env(base_url: str, service: str) -> dict[str, str]:
    """Point every peer at the local receiver, per signal, so nothing leaves the machine."""
    return {
        "OTEL_SERVICE_NAME": service,
        "HYPERDX_API_KEY": "bench-key",
        "HYPERDX_API_ENDPOINT": base_url,
        "OTEL_EXPORTER_OTLP_ENDPOINT": base_url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": base_url + "/v1/traces",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": base_url + "/v1/logs",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": base_url + "/v1/metrics",
    }


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without OTel/HyperDX settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "HYPERDX_")) and k not in ("DEBUG", "VIRTUAL_ENV")
    }
    env.update(extra)
    return env
