"""Shared by the read-interface tests: `hyperdx local` as a subprocess with its ClickHouse
HTTP and HyperDX API ports, filled by the example Flask shop under our distro (two
checkouts and one failure), plus small HTTP helpers that return errors instead of raising."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from test_server_local import Running, start_local, stop_local

from support.apps import BIN, EXAMPLES, ROOT, free_port, get, run, wait_http

NPM_DIR = ROOT / "tests" / "local" / "npm"
HDX = NPM_DIR / "node_modules" / "@hyperdx" / "cli" / "dist" / "cli.js"


@dataclass
class QueryServer:
    running: Running
    clickhouse_port: int
    ui_port: int
    banner: str
    trace_id: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.running.state.api_key

    @property
    def clickhouse_url(self) -> str:
        return f"http://127.0.0.1:{self.clickhouse_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def sql(self, sql: str) -> list[dict[str, Any]]:
        """Rows through the ClickHouse interface (JSONEachRow)."""
        status, body, _ = http(
            f"{self.clickhouse_url}/?default_format=JSONEachRow",
            sql.encode(),
            {"X-ClickHouse-Key": self.key},
        )
        assert status == 200, body
        return [json.loads(line) for line in body.splitlines() if line.strip()]


def http(
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    method: str | None = None,
    timeout: float = 60.0,
) -> tuple[int, bytes, Mapping[str, str]]:
    """(status, body, headers); HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def _read_banner(running: Running, timeout: float = 30.0) -> str:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert running.proc.stdout is not None
    while time.monotonic() < deadline:
        line = running.proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "clickhouse_connect.get_client" in line:
            return "".join(lines)
    raise AssertionError(f"no full banner from hyperdx local: {''.join(lines)!r}")


def _port_after(banner: str, label: str) -> int:
    for line in banner.splitlines():
        if line.strip().startswith(label):
            return int(line.split("http://127.0.0.1:")[1].split()[0])
    raise AssertionError(f"{label} not in the banner: {banner}")


def wait_sql(server: QueryServer, sql: str, count: int, timeout: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = server.sql(sql)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


@contextmanager
def shop_server(tmp: Path, *extra: str) -> Iterator[QueryServer]:
    """hyperdx local on free ports, with the shop's telemetry in it."""
    running = start_local(tmp / "data", "--clickhouse-port", "0", "--ui-port", "0", *extra)
    try:
        banner = _read_banner(running)
        server = QueryServer(
            running,
            _port_after(banner, "ClickHouse HTTP"),
            _port_after(banner, "HyperDX API"),
            banner,
        )
        port = free_port()
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{running.state.http_port}",
            "HYPERDX_API_KEY": running.state.api_key,
            "OTEL_SERVICE_NAME": "shop",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
            "PORT": str(port),
        }
        argv = [
            str(BIN / "opentelemetry-instrument"),
            sys.executable,
            str(EXAMPLES / "flask_app.py"),
        ]
        with run(argv, env, tmp) as app:
            wait_http(f"http://127.0.0.1:{port}/", app, timeout=90)  # a loaded CI box is slow
            for path in ("/checkout", "/checkout", "/fail"):
                get(f"http://127.0.0.1:{port}{path}")
            wait_sql(
                server,
                "SELECT 1 FROM otel_traces WHERE SpanKind = 'Server'"
                " AND SpanName IN ('GET /checkout', 'GET /fail')",
                3,
            )
            app.stop(signal.SIGTERM)  # the SDK flushes everything on SIGTERM
        server.trace_id = server.sql(
            "SELECT TraceId FROM otel_traces WHERE SpanName = 'GET /checkout'"
            " ORDER BY Timestamp LIMIT 1"
        )[0]["TraceId"]
        assert wait_sql(
            server, "SELECT 1 FROM otel_logs WHERE Body = 'payment provider unreachable'", 1
        )
        yield server
    finally:
        stop_local(running)


def ingest_one_log(server: QueryServer, body: str) -> float:
    """Send one OTLP/JSON log record; seconds until the receiver answered 200."""
    now = time.time_ns()
    doc = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "probe"}}]
                },
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": str(now),
                                "severityText": "INFO",
                                "body": {"stringValue": body},
                            }
                        ]
                    }
                ],
            }
        ]
    }
    start = time.monotonic()
    status, text, _ = http(
        f"http://127.0.0.1:{server.running.state.http_port}/v1/logs",
        json.dumps(doc).encode(),
        {"Content-Type": "application/json", "authorization": server.key},
    )
    assert status == 200, text
    return time.monotonic() - start


def non_loopback_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


def request_from(source: str, port: int, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send a raw HTTP request to 127.0.0.1:port from ``source`` (a local non-loopback
    address), so the server sees a non-loopback peer; the whole response."""
    with socket.socket() as sock:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def npm_ready() -> bool:
    """Install the pinned npm clients (hdx, @clickhouse/client) once; quiet and idempotent."""
    marker = NPM_DIR / "node_modules" / ".package-lock.json"
    lock = NPM_DIR / "package-lock.json"
    if HDX.exists() and marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return True
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NPM_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"npm ci in {NPM_DIR} failed:\n{result.stderr}")
    return HDX.exists()


__all__ = ["QueryServer", "shop_server", "http", "stop_local"]
