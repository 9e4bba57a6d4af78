"""`hyperdx local`'s ClickHouse HTTP interface with real clients (clickhouse-connect,
``@clickhouse/client``) and raw HTTP: queries over the shop's telemetry, ClickHouse's headers
and error shape, read-only refusals, limits, bad input, and ingestion going on meanwhile."""

from __future__ import annotations

import base64
import gzip
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path

import pytest

pytest.importorskip("chdb")
clickhouse_connect = pytest.importorskip("clickhouse_connect")

from query_server import (  # noqa: E402
    NPM_DIR,
    QueryServer,
    http,
    ingest_one_log,
    non_loopback_address,
    npm_ready,
    request_from,
    shop_server,
    wait_sql,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")

HEAVY = "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) % 7 = 3"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueryServer]:
    with shop_server(
        tmp_path_factory.mktemp("ch"), "--max-execution-time", "3", "--max-result-mb", "1"
    ) as running:
        yield running


def post(
    server: QueryServer, sql: str, params: str = "", key: str | None = None
) -> tuple[int, bytes, dict[str, str]]:
    status, body, headers = http(
        f"{server.clickhouse_url}/?{params}",
        sql.encode(),
        {"X-ClickHouse-User": "default", "X-ClickHouse-Key": server.key if key is None else key},
    )
    return status, body, dict(headers)


def assert_clickhouse_error(
    result: tuple[int, bytes, dict[str, str]], status: int, code: int, name: str
) -> str:
    got_status, body, headers = result
    text = body.decode()
    assert got_status == status, text
    assert headers["X-ClickHouse-Exception-Code"] == str(code)
    assert text.startswith(f"Code: {code}. DB::Exception: "), text
    assert f"({name})" in text, text
    assert "Traceback" not in text
    return text


def test_ping_and_banner(server: QueryServer) -> None:
    status, body, _ = http(f"{server.clickhouse_url}/ping")
    assert (status, body) == (200, b"Ok.\n")
    assert f"clickhouse_connect.get_client(host='127.0.0.1', port={server.clickhouse_port}" in (
        server.banner
    )
    assert f"hdx auth login -a {server.ui_url} -e you@localhost" in server.banner


def test_clickhouse_connect_parameterised_query_and_types(server: QueryServer) -> None:
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=server.clickhouse_port, username="default", password=server.key
    )
    result = client.query(
        "SELECT SpanName, ServiceName, Duration, Timestamp, SpanAttributes FROM otel_traces"
        " WHERE TraceId = {tid:String} AND SpanKind = {kind:String} ORDER BY Timestamp",
        parameters={"tid": server.trace_id, "kind": "Server"},
    )
    names = [row[0] for row in result.result_rows]
    assert "GET /checkout" in names
    assert {row[1] for row in result.result_rows} == {"shop"}
    types = dict(zip(result.column_names, (t.name for t in result.column_types), strict=True))
    assert types == {
        "SpanName": "LowCardinality(String)",
        "ServiceName": "LowCardinality(String)",
        "Duration": "UInt64",
        "Timestamp": "DateTime64(9)",
        "SpanAttributes": "Map(LowCardinality(String), String)",
    }
    assert all(row[2] > 0 for row in result.result_rows)
    assert result.result_rows[0][4]["http.route"] == "/checkout"


def test_clickhouse_connect_insert_and_drop_are_refused(server: QueryServer) -> None:
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=server.clickhouse_port, password=server.key
    )
    before = client.command("SELECT count() FROM otel_logs")
    assert before >= 2
    with pytest.raises(clickhouse_connect.driver.exceptions.DatabaseError) as insert_error:
        client.insert("otel_logs", [["x"]], column_names=["Body"])
    assert "164" in str(insert_error.value) and "READONLY" in str(insert_error.value)
    for statement in (
        "DROP TABLE otel_logs",
        "TRUNCATE TABLE otel_traces",
        "ALTER TABLE otel_logs DELETE WHERE 1",
        "INSERT INTO otel_logs (Body) VALUES ('x')",
    ):
        with pytest.raises(clickhouse_connect.driver.exceptions.DatabaseError) as error:
            client.command(statement)
        assert "(READONLY)" in str(error.value), statement
    assert client.command("SELECT count() FROM otel_logs") == before
    assert client.command("EXISTS TABLE otel_traces") == 1


@pytest.mark.parametrize(
    "sql",
    [
        "-- hidden\nDROP TABLE otel_logs",
        "/* SELECT */ CREATE TABLE t (a Int8) ENGINE = Memory",
        "WITH 1 AS a INSERT INTO otel_logs (Body) SELECT 'x'",
        "SELECT 1; DROP TABLE otel_logs",
        "SYSTEM DROP MARK CACHE",
        "SET readonly = 0",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT 1 SETTINGS max_execution_time = 0",
        "SELECT 1 SETTINGS max_result_bytes = 1000000000000",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')",
        "SELECT * FROM executable('id', 'TSV', 'a String')",
        "SELECT * FROM remote('127.0.0.1', system.one)",
        "select * from S3('http://127.0.0.1:9/x', 'CSV')",
        "SELECT 1 INTO OUTFILE '/tmp/hyperdx-local-outfile.txt'",
    ],
)
def test_writes_and_escapes_get_the_readonly_error(server: QueryServer, sql: str) -> None:
    result = post(server, sql)
    status = 400 if "; DROP" in sql else 403
    code, name = (62, "SYNTAX_ERROR") if "; DROP" in sql else (164, "READONLY")
    assert_clickhouse_error(result, status, code, name)
    assert not Path("/tmp/hyperdx-local-outfile.txt").exists()


def test_read_statements_with_tricky_text_are_allowed(server: QueryServer) -> None:
    status, body, _ = post(
        server,
        "/* DROP TABLE x */ WITH 'INSERT' AS w SELECT w, 'file(1)' AS f, count() AS n"
        " FROM system.settings WHERE name = 'readonly' FORMAT JSONEachRow;",
    )
    assert status == 200, body
    assert json.loads(body) == {"w": "INSERT", "f": "file(1)", "n": "1"}


def test_headers_formats_params_and_query_id(server: QueryServer) -> None:
    status, body, headers = post(
        server,
        "SELECT ServiceName, count() AS n FROM otel_logs WHERE Body = {body:String}"
        " GROUP BY ServiceName",
        "default_format=TabSeparatedWithNames&param_body=payment+provider+unreachable&query_id=my-query-1",
    )
    assert status == 200, body
    assert body.decode().splitlines() == ["ServiceName\tn", "shop\t1"]
    assert headers["X-ClickHouse-Format"] == "TabSeparatedWithNames"
    assert headers["X-ClickHouse-Query-Id"] == "my-query-1"
    assert headers["X-ClickHouse-Timezone"] == "UTC"
    summary = json.loads(headers["X-ClickHouse-Summary"])
    assert int(summary["read_rows"]) >= 1 and summary["written_rows"] == "0"
    assert summary["result_rows"] == "1" and summary["result_bytes"] == str(len(body))
    # A FORMAT clause wins over default_format; `database` selects the database.
    status, body, headers = post(
        server, "SELECT name FROM tables WHERE name = 'otel_logs' FORMAT JSON", "database=system"
    )
    assert status == 200, body
    doc = json.loads(body)
    assert headers["X-ClickHouse-Format"] == "JSON"
    assert doc["meta"] == [{"name": "name", "type": "String"}]
    assert doc["data"] == [{"name": "otel_logs"}]
    # ClickHouse's defaults: TabSeparated output, 64-bit integers quoted in JSON.
    status, body, headers = post(server, "SELECT toUInt64(3) AS x, 'a' AS s")
    assert (status, body, headers["X-ClickHouse-Format"]) == (200, b"3\ta\n", "TabSeparated")
    status, body, _ = post(server, "SELECT toUInt64(3) AS x FORMAT JSONEachRow")
    assert json.loads(body) == {"x": "3"}
    # The per-query database does not stick to the session.
    status, body, _ = post(server, "SELECT currentDatabase()")
    assert body == b"default\n"


def test_get_query_auth_variants_chunked_and_gzip(server: QueryServer) -> None:
    sql = urllib.parse.quote("SELECT count() FROM otel_traces WHERE ServiceName = 'shop'")
    basic = base64.b64encode(f"default:{server.key}".encode()).decode()
    by_basic = http(
        f"{server.clickhouse_url}/?query={sql}", headers={"Authorization": f"Basic {basic}"}
    )
    by_params = http(f"{server.clickhouse_url}/?query={sql}&user=default&password={server.key}")
    assert by_basic[0] == by_params[0] == 200
    assert by_basic[1] == by_params[1] and int(by_basic[1]) >= 3
    # query= and a chunked body are joined, as ClickHouse does.
    conn = HTTPConnection("127.0.0.1", server.clickhouse_port, timeout=30)
    conn.request(
        "POST",
        "/?query=SELECT&enable_http_compression=1",
        body=iter([b" 40 +", b" 2 AS answer"]),
        headers={"X-ClickHouse-Key": server.key, "Accept-Encoding": "gzip"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    assert response.status == 200, raw
    assert response.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(raw) == b"42\n"


def test_bad_input_gets_clickhouse_errors_and_ingestion_goes_on(server: QueryServer) -> None:
    wrong = assert_clickhouse_error(
        post(server, "SELECT 1", key="not-the-key"), 401, 516, "AUTHENTICATION_FAILED"
    )
    assert "not-the-key" not in wrong
    assert_clickhouse_error(
        http(f"{server.clickhouse_url}/?query=SELECT+1"), 401, 516, "AUTHENTICATION_FAILED"
    )
    assert_clickhouse_error(post(server, "SELEC count() FROM otel_logs"), 400, 62, "SYNTAX_ERROR")
    assert_clickhouse_error(post(server, "SELECT 1 FORMAT NoSuchFormat"), 400, 73, "UNKNOWN_FORMAT")
    assert_clickhouse_error(
        post(server, "SELECT 1", "default_format=NoSuchFormat"), 400, 73, "UNKNOWN_FORMAT"
    )
    assert_clickhouse_error(post(server, "SELECT * FROM no_such_table"), 404, 60, "UNKNOWN_TABLE")
    assert_clickhouse_error(
        post(server, "SELECT 1", "no_such_setting=1"), 400, 115, "UNKNOWN_SETTING"
    )
    big = "SELECT '" + "x" * (10 << 20) + "'"
    text = assert_clickhouse_error(post(server, big), 400, 62, "SYNTAX_ERROR")
    assert "Max query size exceeded" in text
    # Results over --max-result-mb (1 MiB here) are refused, not sent.
    text = assert_clickhouse_error(
        post(server, "SELECT repeat('x', 1000) FROM numbers(5000)"),
        500,
        396,
        "TOO_MANY_ROWS_OR_BYTES",
    )
    status, body, _ = http(f"{server.clickhouse_url}/no/such/path")
    assert status == 404 and b"DB::Exception" in body
    before = wait_sql(server, "SELECT 1 FROM otel_logs WHERE Body = 'after bad input'", 0)
    assert before == []
    ingest_one_log(server, "after bad input")
    assert wait_sql(server, "SELECT 1 FROM otel_logs WHERE Body = 'after bad input'", 1)


def test_query_past_the_limit_stops_and_ingestion_keeps_its_latency(server: QueryServer) -> None:
    baseline = sorted(ingest_one_log(server, f"baseline {i}") for i in range(5))[2]
    outcome: dict[str, object] = {}

    def heavy() -> None:
        start = time.monotonic()
        outcome["result"] = post(server, HEAVY)
        outcome["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=heavy)
    thread.start()
    time.sleep(0.5)
    during = []
    while thread.is_alive() and len(during) < 20:
        during.append(ingest_one_log(server, f"during heavy {len(during)}"))
        time.sleep(0.05)
    # The CLI's own query path stays free too.
    status, body, _ = post(server, "SELECT 1")
    assert (status, body) == (200, b"1\n")
    thread.join(timeout=60)
    text = assert_clickhouse_error(outcome["result"], 500, 159, "TIMEOUT_EXCEEDED")  # type: ignore[arg-type]
    assert "maximum: 3" in text
    assert 2.5 < float(outcome["seconds"]) < 30  # type: ignore[arg-type]
    assert during, "no insert ran while the heavy query did"
    # Generous: the machine is shared; a blocked ingest would wait the full 3 s.
    assert sorted(during)[len(during) // 2] < max(1.0, 10 * baseline), (baseline, during)
    # A client may lower the limit, never raise it.
    start = time.monotonic()
    assert_clickhouse_error(
        post(server, HEAVY, "max_execution_time=1"), 500, 159, "TIMEOUT_EXCEEDED"
    )
    assert time.monotonic() - start < 2.8
    assert_clickhouse_error(post(server, "SELECT 1", "max_execution_time=60"), 403, 164, "READONLY")


def test_non_loopback_client_is_refused(server: QueryServer) -> None:
    source = non_loopback_address()
    if source is None:
        pytest.skip("this machine has no non-loopback address to send from")
    raw = request_from(
        source,
        server.clickhouse_port,
        f"GET /?query=SELECT+1 HTTP/1.1\r\nHost: x\r\nX-ClickHouse-Key: {server.key}\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403"), raw
    assert b"X-ClickHouse-Exception-Code: 195" in head
    assert body.startswith(b"Code: 195. DB::Exception: ") and b"loopback" in body
    # ... and loopback clients are still served.
    assert post(server, "SELECT 1")[1] == b"1\n"


NODE_CLIENT = r"""
const { createClient } = require('@clickhouse/client');
(async () => {
  const client = createClient({ url: process.env.CH_URL, username: 'default',
                                password: process.env.CH_KEY });
  const json = await (await client.query({
    query: 'SELECT SpanName, count() AS n FROM otel_traces WHERE ServiceName = {svc:String}'
         + ' GROUP BY SpanName ORDER BY SpanName',
    format: 'JSON', query_params: { svc: 'shop' } })).json();
  const rows = await (await client.query({
    query: 'SELECT Body FROM otel_logs WHERE SeverityText = {level:String}'
         + ' AND Body LIKE {prefix:String} ORDER BY Timestamp',
    format: 'JSONEachRow', query_params: { level: 'error', prefix: 'payment%' } })).json();
  let refused = null;
  try { await client.command({ query: 'DROP TABLE otel_logs' }); }
  catch (e) { refused = { code: e.code, type: e.type }; }
  console.log(JSON.stringify({ meta: json.meta, data: json.data, rows, refused }));
  await client.close();
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_node_clickhouse_client_json_and_jsoneachrow(server: QueryServer) -> None:
    assert npm_ready()
    result = subprocess.run(
        ["node", "-e", NODE_CLIENT],
        cwd=NPM_DIR,
        env={"PATH": os.environ["PATH"], "CH_URL": server.clickhouse_url, "CH_KEY": server.key},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["meta"] == [
        {"name": "SpanName", "type": "LowCardinality(String)"},
        {"name": "n", "type": "UInt64"},
    ]
    counts = {row["SpanName"]: row["n"] for row in doc["data"]}
    assert counts["GET /checkout"] == "2" and counts["GET /fail"] == "1"
    assert doc["rows"] == [{"Body": "payment provider unreachable"}]
    assert doc["refused"] == {"code": "164", "type": "READONLY"}


def test_guard_reads_formats_and_settings_clauses() -> None:
    from hyperdx.local.sql_guard import GuardError, vet

    caps = {"max_execution_time": 30, "max_threads": 2}
    statement = vet(
        "SELECT format('{} x', 1) AS f FROM system.settings WHERE name = 'settings'"
        " SETTINGS max_threads = 1, max_execution_time = 5 FORMAT JSONCompact;",
        caps,
    )
    assert statement.output_format == "JSONCompact"
    assert statement.settings == {"max_threads": "1", "max_execution_time": "5"}
    assert not statement.sql.rstrip().endswith(";")
    assert vet("SELECT * FROM `file` AS url").output_format is None  # names, not calls
    for refused in (
        "SELECT 1 SETTINGS max_execution_time = -1",
        "SELECT 1 SETTINGS max_threads = 64",
        "(SELECT 1) UNION ALL (SELECT * FROM file('x'))",
        "SELECT 'unterminated",
    ):
        with pytest.raises(GuardError):
            vet(refused, caps)


def test_engine_errors_are_unnested() -> None:
    from hyperdx.local.clickhouse_http import ClickHouseError

    error = ClickHouseError.from_engine(
        "Code: 73. DB::Exception: Code: 73. DB::Exception: Code: 73. DB::Exception: Unknown"
        " format Nope. (UNKNOWN_FORMAT) (version 26.9.2.1). (UNKNOWN_FORMAT) (version 26.9.2.1)"
    )
    assert (error.code, error.name, error.status) == (73, "UNKNOWN_FORMAT", 400)
    assert error.body == (
        "Code: 73. DB::Exception: Unknown format Nope. (UNKNOWN_FORMAT) (version 26.9.2.1)\n"
    )


def test_a_taken_explicit_port_is_a_clear_startup_error(tmp_path: Path) -> None:
    import socket
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "hyperdx.cli", "local"]
            + ["--data-dir", str(tmp_path), "--http-port", "0", "--grpc-port", "0"]
            + ["--clickhouse-port", str(port), "--ui-port", "0"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"cannot listen on 127.0.0.1:{port} (--clickhouse-port)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "hyperdx-local.json").exists()


def _post_in_two_parts(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST ``body`` with a Content-Length, its second half sent 0.3 s after the first (a
    slow client, or a body that crosses packets): the server must wait for all of it."""
    parsed = urllib.parse.urlsplit(url)
    head = [f"POST {parsed.path or '/'}{'?' + parsed.query if parsed.query else ''} HTTP/1.1"]
    head += [f"Host: {parsed.netloc}", f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body[: len(body) // 2])
        time.sleep(0.3)
        sock.sendall(body[len(body) // 2 :])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_a_body_sent_in_parts_is_read_whole_by_every_endpoint(server: QueryServer) -> None:
    status, body = _post_in_two_parts(
        f"{server.clickhouse_url}/", b"SELECT 40 + 2 AS answer", {"X-ClickHouse-Key": server.key}
    )
    assert (status, body) == (200, b"42\n")
    query = json.dumps({"sql": "SELECT 40 + 2 AS answer"}).encode()
    status, body = _post_in_two_parts(
        server.running.state.query_url, query, {"Authorization": server.key}
    )
    assert status == 200, body
    assert b'"answer"' in body and b"42" in body
    login = json.dumps({"email": "you@localhost", "password": server.key}).encode()
    status, body = _post_in_two_parts(
        f"{server.ui_url}/api/login/password", login, {"Content-Type": "application/json"}
    )
    assert (status, json.loads(body)) == (200, {"status": "success"})
