"""HyperDX's own CLI, `hdx` (npm ``@hyperdx/cli``, pinned in tests/local/npm), against
`hyperdx local` filled by the shop under our distro: login, sources, connections, queries in
three formats, a chart, log patterns, and the TUI driven through a pseudo-terminal (search
shows the app's log lines; a row's trace shows the span names the SDK sent)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("chdb")

from query_server import HDX, QueryServer, npm_ready, shop_server  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[a-zA-Z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\x1b[=>]")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueryServer]:
    assert npm_ready()
    tmp = tmp_path_factory.mktemp("hdx")
    with shop_server(tmp) as running:
        running.facts["home"] = tmp / "home"
        running.facts["home"].mkdir()
        yield running


def hdx_env(server: QueryServer) -> dict[str, str]:
    # hdx keeps its session in ~/.config/hyperdx/cli: a private HOME per test server.
    return {"PATH": os.environ["PATH"], "HOME": str(server.facts["home"]), "NO_COLOR": "1"}


def hdx(server: QueryServer, *args: str, code: int = 0) -> str:
    result = subprocess.run(
        ["node", str(HDX), *args],
        env=hdx_env(server),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == code, f"hdx {args}: {result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def logged_in(server: QueryServer) -> QueryServer:
    out = hdx(
        server, "auth", "login", "-a", server.ui_url, "-e", "dev@example.com", "-p", "nope", code=1
    )
    assert "Invalid email or password" in out
    out = hdx(
        server, "auth", "login", "-a", server.ui_url, "-e", "dev@example.com", "-p", server.key
    )
    assert f"Logged in as dev@example.com ({server.ui_url})" in out
    session = server.facts["home"] / ".config" / "hyperdx" / "cli" / "session.json"
    assert server.key not in session.read_text()
    return server


def test_sources_and_connections(logged_in: QueryServer) -> None:
    sources = json.loads(hdx(logged_in, "sources", "--json"))
    by_name = {s["name"]: s for s in sources}
    assert sorted(by_name) == ["Logs", "Metrics", "Sessions", "Traces"]
    logs, traces = by_name["Logs"], by_name["Traces"]
    assert logs["table"] == "otel_logs" and logs["schema"].startswith(
        "CREATE TABLE default.otel_logs"
    )
    assert logs["expressions"]["body"] == "Body"
    assert logs["correlatedSources"]["trace"] == traces["id"]
    assert traces["correlatedSources"]["log"] == logs["id"]
    assert traces["expressions"]["durationPrecision"] == 9
    assert by_name["Metrics"]["schema"] is None  # hdx skips metric schemas
    connections = json.loads(hdx(logged_in, "connections", "--json"))
    assert connections == [
        {"id": logs["connection"], "name": "Local", "host": logged_in.clickhouse_url}
    ]
    logged_in.facts["connection"] = logs["connection"]


SPANS_SQL = (
    "SELECT SpanName, count() AS n FROM otel_traces WHERE SpanKind = 'Server'"
    " GROUP BY SpanName ORDER BY SpanName"
)


def test_query_in_three_formats(logged_in: QueryServer) -> None:
    connection = json.loads(hdx(logged_in, "connections", "--json"))[0]["id"]
    each = hdx(logged_in, "query", "--connection-id", connection, "--sql", SPANS_SQL)
    rows = {r["SpanName"]: r["n"] for r in map(json.loads, each.splitlines())}
    assert rows["GET /checkout"] == "2" and rows["GET /fail"] == "1"
    doc = json.loads(
        hdx(
            logged_in,
            "query",
            "--connection-id",
            connection,
            "--sql",
            SPANS_SQL,
            "--format",
            "JSON",
        )
    )
    assert doc["meta"] == [
        {"name": "SpanName", "type": "LowCardinality(String)"},
        {"name": "n", "type": "UInt64"},
    ]
    tsv = hdx(
        logged_in,
        "query",
        "--connection-id",
        connection,
        "--sql",
        SPANS_SQL,
        "--format",
        "TabSeparated",
    )
    assert "GET /checkout\t2" in tsv.splitlines() and "GET /fail\t1" in tsv.splitlines()
    # A write through hdx gets ClickHouse's READONLY error, and nothing changes.
    out = hdx(
        logged_in, "query", "--connection-id", connection, "--sql", "DROP TABLE otel_logs", code=1
    )
    assert "Query failed: Cannot execute DROP query: hyperdx local is read-only" in out
    assert logged_in.sql("EXISTS TABLE otel_logs") == [{"result": 1}]


def test_chart_by_service_and_patterns(logged_in: QueryServer) -> None:
    total = logged_in.sql("SELECT count() AS n FROM otel_logs WHERE ServiceName = 'shop'")[0]["n"]
    out = hdx(logged_in, "chart", "-s", "Logs", "--group-by", "ServiceName", "--display", "table")
    assert "count() by ServiceName (table)" in out
    assert re.search(rf"^\s*{total}\s+shop\s*$", out, re.MULTILINE), out
    connection = json.loads(hdx(logged_in, "connections", "--json"))[0]["id"]
    patterns = [
        json.loads(line)
        for line in hdx(
            logged_in,
            "query",
            "--connection-id",
            connection,
            "--sql",
            "SELECT Body FROM otel_logs WHERE ServiceName = 'shop'",
            "--patterns",
            "--body-column",
            "Body",
        ).splitlines()
    ]
    counts = {p["pattern"]: p["count"] for p in patterns}
    assert counts["low stock for sku-42: 3 left"] == 2
    assert counts["payment provider unreachable"] == 1


class Tui:
    """`hdx tui` on a pseudo-terminal (160x45); ``screen`` is what it drew, ANSI removed."""

    def __init__(self, server: QueryServer, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 160, 0, 0))
        env = {**hdx_env(server), "TERM": "xterm-256color"}
        env.pop("NO_COLOR")
        self.proc = subprocess.Popen(
            ["node", str(HDX), "tui", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.raw = b""

    @property
    def screen(self) -> str:
        return _ANSI.sub(b"", self.raw).decode("utf-8", "replace")

    def wait_for(self, *texts: str, timeout: float = 40.0) -> str:
        """Read output until every text has appeared since the last ``press``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(t in self.screen for t in texts):
                return self.screen
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.raw += os.read(self.master, 65536)
                except OSError:
                    break
        raise AssertionError(f"{texts} not on the TUI screen:\n{self.screen[-3000:]}")

    def press(self, keys: str) -> None:
        self.raw = b""
        os.write(self.master, keys.encode())

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.master)


def test_tui_search_and_trace(logged_in: QueryServer) -> None:
    spans = {
        r["SpanName"]
        for r in logged_in.sql(
            "SELECT SpanName FROM otel_traces WHERE TraceId = ("
            " SELECT TraceId FROM otel_logs WHERE Body = 'low stock for sku-42: 3 left'"
            " ORDER BY Timestamp DESC LIMIT 1)"
        )
    }
    assert {"GET /checkout", "GET /inventory"} <= spans
    tui = Tui(logged_in, "--source", "Logs")
    try:
        # The rows render in more than one screen update: wait for every text, then check.
        screen = tui.wait_for(
            "Logs (default.otel_logs)",
            "payment provider unreachable",
            "low stock for sku-42: 3 left",
        )
        assert "low stock for sku-42: 3 left" in screen and "shop" in screen
        tui.press("q")
        tui.proc.wait(timeout=10)
    finally:
        tui.close()
    tui = Tui(logged_in, "--source", "Logs", "-q", "low stock")
    try:
        tui.wait_for("low stock for sku-42: 3 left")
        tui.press("l")  # the selected (newest) row's detail
        tui.wait_for("▸ Overview", "Top Level Attributes")  # loaded: Tab now switches tabs
        tui.press("\t")
        tui.wait_for("▸ Column Values", "__hdx_body")
        tui.press("\t")
        screen = tui.wait_for("▸ Trace", *sorted(spans), "low stock for sku-42: 3 left")
        assert re.search(r"\d+ spans?, \d+ logs?", screen), screen[-2000:]
        assert "shop > GET /checkout" in screen
    finally:
        tui.close()


def test_hdx_without_login_is_told_to_log_in(server: QueryServer, tmp_path: Path) -> None:
    result = subprocess.run(
        ["node", str(HDX), "sources", "--json", "-a", server.ui_url],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert server.key not in result.stdout + result.stderr
