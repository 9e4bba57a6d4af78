"""End to end: the example Flask shop under `opentelemetry-instrument` (our distro) sends into
`hyperdx local`; its trace and logs join in SQL; the `hyperdx` commands print them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("chdb")

from click.testing import CliRunner  # noqa: E402
from test_server_local import Running, otel_logger, start_local, stop_local  # noqa: E402

from hyperdx.cli import main  # noqa: E402

from support.apps import BIN, EXAMPLES, free_port, get, run, wait_http  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")


def wait_rows(server: Running, sql: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = server.rows(sql)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """hyperdx local + the shop under the agent: two checkouts and one failure."""
    tmp = tmp_path_factory.mktemp("cli")
    server = start_local(tmp / "data")
    port = free_port()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.state.http_port}",
        "HYPERDX_API_KEY": server.state.api_key,
        "OTEL_SERVICE_NAME": "shop",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "PORT": str(port),
    }
    argv = [str(BIN / "opentelemetry-instrument"), sys.executable, str(EXAMPLES / "flask_app.py")]
    try:
        with run(argv, env, tmp) as app:
            wait_http(f"http://127.0.0.1:{port}/", app)
            statuses = [
                get(f"http://127.0.0.1:{port}{path}")[0]
                for path in ("/checkout", "/checkout", "/fail")
            ]
            wait_rows(
                server,
                "SELECT 1 FROM otel_traces WHERE SpanKind = 'Server'"
                " AND SpanName IN ('GET /checkout', 'GET /inventory', 'GET /fail')",
                5,
            )
            app.stop(signal.SIGTERM)  # the SDK flushes everything on SIGTERM
        checkout = server.rows(
            "SELECT TraceId FROM otel_traces WHERE SpanName = 'GET /checkout'"
            " ORDER BY Timestamp LIMIT 1"
        )[0]["TraceId"]
        failed = server.rows(
            "SELECT TraceId FROM otel_traces WHERE SpanName = 'GET /fail' LIMIT 1"
        )[0]["TraceId"]
        yield {
            "server": server,
            "statuses": statuses,
            "checkout": checkout,
            "failed": failed,
            "env": {"HYPERDX_LOCAL_DATA_DIR": str(server.data_dir)},
        }
    finally:
        stop_local(server)


def cli(shop: dict[str, Any], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args), env=shop["env"], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_app_served_and_trace_and_logs_join_in_sql(shop: dict[str, Any]) -> None:
    assert shop["statuses"] == [200, 200, 500]
    rows = shop["server"].rows(
        "SELECT t.SpanName AS Span, t.SpanKind AS Kind, l.SeverityText AS Level, l.Body AS Body"
        " FROM otel_logs AS l INNER JOIN otel_traces AS t"
        " ON l.TraceId = t.TraceId AND l.SpanId = t.SpanId"
        f" WHERE l.TraceId = '{shop['checkout']}' ORDER BY l.Timestamp"
    )
    # INFO "checkout started" stays home: the root logger's default level is WARNING (S9)
    assert rows == [
        {
            "Span": "GET /checkout",
            "Kind": "Server",
            "Level": "warn",
            "Body": "low stock for sku-42: 3 left",
        },
    ]


def test_logs_json_and_filters(shop: dict[str, Any]) -> None:
    lines = cli(shop, "logs", "--json", "--service", "shop").splitlines()
    records = [json.loads(line) for line in lines]
    bodies = [r["Body"] for r in records]
    assert bodies.count("low stock for sku-42: 3 left") == 2
    assert "payment provider unreachable" in bodies
    assert all(r["ServiceName"] == "shop" for r in records)
    assert [r["Timestamp"] for r in records] == sorted(r["Timestamp"] for r in records)
    warn = [
        json.loads(x)["SeverityText"]
        for x in cli(shop, "logs", "--json", "--level", "warn").splitlines()
    ]
    assert warn and set(warn) <= {"warn", "error"} and "error" in warn
    found = [
        json.loads(x)["Body"]
        for x in cli(shop, "logs", "--json", "-q", "LOW STOCK", "--since", "1h").splitlines()
    ]
    assert found == ["low stock for sku-42: 3 left"] * 2
    assert cli(shop, "logs", "--json", "--service", "nobody") == ""


def test_logs_for_people(shop: dict[str, Any]) -> None:
    out = cli(shop, "logs", "--service", "shop", "-n", "3")
    lines = out.splitlines()
    assert len(lines) == 3
    assert (
        any(
            "WARN" in ln and "low stock for sku-42: 3 left" in ln and "shop" in ln
            for ln in out.splitlines()
        )
        or "ERROR" in out
    )
    assert "payment provider unreachable" in out
    assert "no log records match" in cli(shop, "logs", "--service", "nobody")


def test_traces_list(shop: dict[str, Any]) -> None:
    rows = json.loads(cli(shop, "traces", "--json", "--service", "shop"))
    by_id = {r["TraceId"]: r for r in rows}
    checkout = by_id[shop["checkout"]]
    assert (checkout["RootSpan"], checkout["Service"], checkout["Spans"], checkout["Status"]) == (
        "GET /checkout",
        "shop",
        3,
        "Unset",
    )
    assert checkout["DurationNs"] > 0
    assert by_id[shop["failed"]]["Status"] == "Error"
    assert by_id[shop["failed"]]["RootSpan"] == "GET /fail"
    out = cli(shop, "traces")
    assert shop["checkout"] in out and "GET /checkout" in out and "✗ Error" in out


def test_trace_waterfall(shop: dict[str, Any]) -> None:
    data = json.loads(cli(shop, "trace", shop["checkout"], "--json"))
    assert [(s["SpanName"], s["SpanKind"]) for s in data["spans"]] == [
        ("GET /checkout", "Server"),
        ("GET", "Client"),
        ("GET /inventory", "Server"),
    ]
    assert [r["Body"] for r in data["logs"]] == ["low stock for sku-42: 3 left"]
    assert data["logs"][0]["SpanId"] == data["spans"][0]["SpanId"]
    out = cli(shop, "trace", shop["checkout"])
    lines = out.splitlines()
    assert f"trace {shop['checkout']}" in lines[0] and "3 spans, 1 log," in lines[0]

    def line_of(text: str) -> int:
        return next(i for i, ln in enumerate(lines) if text in ln)

    root, started = line_of("GET /checkout"), line_of("low stock for sku-42")
    client, child = line_of("GET [Client]"), line_of("GET /inventory")
    assert root < started < client < child  # logs under their span, children indented below
    assert lines[child].index("GET /inventory") > lines[root].index("GET /checkout")
    assert "█" in lines[root] and "█" in lines[child]
    assert "WARN low stock for sku-42: 3 left" in out


def test_failed_trace_is_marked(shop: dict[str, Any]) -> None:
    out = cli(shop, "trace", shop["failed"])
    assert "✗ 1 error" in out
    assert "GET /fail" in out and "✗" in out.split("GET /fail", 2)[-1]
    assert "ERROR payment provider unreachable" in out


def test_metrics(shop: dict[str, Any]) -> None:
    rows = {r["MetricName"]: r for r in json.loads(cli(shop, "metrics", "--json"))}
    checkouts = rows["app.checkouts"]
    sums = shop["server"].rows(
        "SELECT TimeUnix, sum(Value) AS V FROM otel_metrics_sum"
        " WHERE MetricName = 'app.checkouts' GROUP BY TimeUnix ORDER BY TimeUnix"
    )
    assert sum(float(p["V"]) for p in sums) == 2  # delta points: one export or two
    assert (checkouts["Kind"], checkouts["Services"], checkouts["LatestValue"]) == (
        "sum",
        ["shop"],
        float(sums[-1]["V"]),
    )
    duration = rows["http.server.duration"]
    # Delta histograms: the six server requests may fall into one export or several, so
    # the latest count is whatever the store's latest point holds, and all points add to 6.
    points = shop["server"].rows(
        "SELECT TimeUnix, sum(Count) AS C FROM otel_metrics_histogram"
        " WHERE MetricName = 'http.server.duration' AND ServiceName = 'shop'"
        " GROUP BY TimeUnix ORDER BY TimeUnix"
    )
    assert sum(int(p["C"]) for p in points) == 6
    latest = int(points[-1]["C"])
    assert (duration["Kind"], duration["Unit"], duration["LatestCount"]) == (
        "histogram",
        "ms",
        latest,
    )
    out = cli(shop, "metrics")
    assert "app.checkouts" in out and "sum" in out
    assert f"count {latest}, sum" in out
    series = json.loads(cli(shop, "metrics", "--name", "app.checkouts", "--json"))
    assert series["kind"] == "sum"
    assert series["points"][-1]["Value"] == float(sums[-1]["V"])
    assert series["points"][-1]["Attributes"] == {"payment.method": "card"}
    out = cli(shop, "metrics", "--name", "app.checkouts")
    assert "app.checkouts (sum" in out and '"payment.method": "card"' in out


def test_sql(shop: dict[str, Any]) -> None:
    sql = "SELECT SpanName, count() AS n FROM otel_traces GROUP BY SpanName ORDER BY SpanName"
    assert json.loads(cli(shop, "sql", "--json", sql)) == [
        {"SpanName": "GET", "n": 2},  # the requests client span of each checkout
        {"SpanName": "GET /", "n": 1},  # the readiness probe
        {"SpanName": "GET /checkout", "n": 2},
        {"SpanName": "GET /fail", "n": 1},
        {"SpanName": "GET /inventory", "n": 2},
    ]
    out = cli(shop, "sql", sql)
    assert "SpanName" in out and "GET /inventory" in out and "5 row(s)" in out


def test_bad_input_names_the_value(shop: dict[str, Any]) -> None:
    assert "trace id: 'xyz' is not 32 hex characters" in cli(shop, "trace", "xyz", code=1)
    assert "--since: '5x'" in cli(shop, "logs", "--since", "5x", code=1)
    assert "--level: 'loud'" in cli(shop, "logs", "--level", "loud", code=1)
    assert "no metric named 'nope'" in cli(shop, "metrics", "--name", "nope", code=1)
    assert "UNKNOWN_IDENTIFIER" in cli(shop, "sql", "SELECT nope", code=1)
    nowhere = str(shop["server"].data_dir.parent / "nowhere")
    assert "no hyperdx local data at" in cli(shop, "logs", "--data-dir", nowhere, code=1)
    missing = "0" * 31 + "1"
    assert "no spans or logs" in cli(shop, "trace", missing, code=1)


def test_logs_follow(shop: dict[str, Any]) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    server: Running = shop["server"]
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hyperdx.cli",
            "logs",
            "-f",
            "--json",
            "--service",
            "follower",
            "-n",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **shop["env"], "PYTHONFAULTHANDLER": "1"},
    )
    try:
        time.sleep(1.5)  # let it print the (empty) backlog and start polling
        provider = LoggerProvider(resource=Resource.create({"service.name": "follower"}))
        provider.add_log_record_processor(
            SimpleLogRecordProcessor(
                OTLPLogExporter(
                    endpoint=f"{server.http_url}/v1/logs",
                    headers={"authorization": server.state.api_key},
                )
            )
        )
        log = otel_logger(provider, "follower")
        log.warning("followed one")
        log.warning("followed two")
        provider.shutdown()
        got = [json.loads(follower.stdout.readline())["Body"] for _ in range(2)]
        assert got == ["followed one", "followed two"]
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            # generous: on a loaded machine the exit itself has been seen to take over 10 s
            _, err = follower.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            follower.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack
            _, err = follower.communicate(timeout=10)
            raise AssertionError(f"`hyperdx logs -f` ignored SIGINT for 45 s:\n{err}") from None
    assert follower.returncode == 0, err


def test_help_without_local_extra(tmp_path: Path) -> None:
    """`hyperdx --help` works when chdb and rich are missing (base install)."""
    code = (
        "import sys\n"
        "sys.modules['chdb'] = None; sys.modules['rich'] = None\n"
        "from hyperdx.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "try:\n"
        "    main(['sql', '--data-dir', sys.argv[1], 'SELECT 1'])\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("local", "logs", "traces", "trace", "metrics", "sql"):
        assert f"  {command} " in proc.stdout
    assert "exit 1" in proc.stdout
    assert "pip install 'hyperdx-opentelemetry[local]'" in proc.stderr


@pytest.mark.parametrize("command", ["local", "logs", "traces", "trace", "metrics", "sql"])
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage: main " + command in result.output or f"Usage: hyperdx {command}" in result.output
    assert "--help" in result.output
