"""`hyperdx local`'s HyperDX API (the part `hdx` uses), over raw HTTP: password login with the
local key, session cookie, the sources over our tables, the ClickHouse proxy on the same
read-only engine, and HyperDX's errors for everything else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.cookies import SimpleCookie

import pytest

pytest.importorskip("chdb")

from query_server import (  # noqa: E402
    QueryServer,
    http,
    ingest_one_log,
    non_loopback_address,
    request_from,
    shop_server,
    wait_sql,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueryServer]:
    with shop_server(tmp_path_factory.mktemp("api")) as running:
        yield running


def login(server: QueryServer, password: str) -> tuple[int, str | None]:
    status, _, headers = http(
        f"{server.ui_url}/api/login/password",
        json.dumps({"email": "dev@example.com", "password": password}).encode(),
        {"Content-Type": "application/json"},
    )
    cookie = headers.get("Set-Cookie")
    if cookie is None:
        return status, None
    jar: SimpleCookie = SimpleCookie()
    jar.load(cookie)
    return status, "; ".join(f"{k}={v.value}" for k, v in jar.items())


@pytest.fixture(scope="module")
def cookie(server: QueryServer) -> str:
    status, value = login(server, server.key)
    assert status == 200 and value is not None
    return value


def get_json(server: QueryServer, path: str, cookie: str) -> object:
    status, body, _ = http(f"{server.ui_url}{path}", headers={"cookie": cookie})
    assert status == 200, body
    return json.loads(body)


def test_login_wrong_key_is_401_without_cookie(server: QueryServer) -> None:
    assert login(server, "wrong") == (401, None)
    assert login(server, "") == (401, None)
    status, body, _ = http(
        f"{server.ui_url}/api/login/password", b"not json", {"Content-Type": "application/json"}
    )
    assert status == 400 and b"email" in body


def test_me_and_the_lists_hdx_reads(server: QueryServer, cookie: str) -> None:
    me = get_json(server, "/api/me", cookie)
    assert isinstance(me, dict)
    assert me["email"] == "dev@example.com"
    assert set(me["team"]) >= {"id", "name"}
    assert server.key not in json.dumps(me)
    connections = get_json(server, "/api/connections", cookie)
    assert connections == [
        {
            "id": connections[0]["id"],  # type: ignore[index]
            "_id": connections[0]["id"],  # type: ignore[index]
            "name": "Local",
            "host": server.clickhouse_url,
            "username": "default",
            "team": me["team"]["id"],
        }
    ]
    assert get_json(server, "/api/saved-searches", cookie) == []
    assert get_json(server, "/api/dashboards", cookie) == []
    assert get_json(server, "/api/alerts", cookie) == {"data": []}


def test_sources_are_clickstacks_defaults_and_linked(server: QueryServer, cookie: str) -> None:
    sources = get_json(server, "/api/sources", cookie)
    assert isinstance(sources, list)
    by_kind = {s["kind"]: s for s in sources}
    assert sorted(by_kind) == ["log", "metric", "session", "trace"]
    logs, traces, metrics = by_kind["log"], by_kind["trace"], by_kind["metric"]
    assert (logs["name"], logs["from"]) == (
        "Logs",
        {"databaseName": "default", "tableName": "otel_logs"},
    )
    assert logs["defaultTableSelectExpression"] == "Timestamp, ServiceName, SeverityText, Body"
    assert (logs["traceIdExpression"], logs["spanIdExpression"]) == ("TraceId", "SpanId")
    assert logs["traceSourceId"] == traces["id"] and logs["metricSourceId"] == metrics["id"]
    assert traces["logSourceId"] == logs["id"] and traces["durationPrecision"] == 9
    assert traces["from"]["tableName"] == "otel_traces"
    assert metrics["metricTables"]["exponential histogram"] == "otel_metrics_exponential_histogram"
    assert by_kind["session"]["from"]["tableName"] == "hyperdx_sessions"
    connection = get_json(server, "/api/connections", cookie)[0]["id"]  # type: ignore[index]
    assert {s["connection"] for s in sources} == {connection}
    # Every expression names a real column (or Nested prefix, like Events) of its table.
    for source in (logs, traces):
        table = source["from"]["tableName"]
        columns = {r["name"] for r in server.sql(f"DESCRIBE TABLE {table}")}
        for name, value in source.items():
            if name.endswith("Expression") and name != "defaultTableSelectExpression":
                column = value.split()[0]
                assert any(c == column or c.startswith(f"{column}.") for c in columns), value


def test_clickhouse_proxy_runs_on_the_read_only_engine(server: QueryServer, cookie: str) -> None:
    status, body, headers = http(
        f"{server.ui_url}/api/clickhouse-proxy/?query_id=q1&param_svc=shop"
        "&output_format_json_quote_64bit_integers=1",
        b"SELECT count() AS n FROM otel_traces WHERE ServiceName = {svc:String}\nFORMAT JSON",
        {"cookie": cookie, "content-type": "text/plain"},
    )
    assert status == 200, body
    doc = json.loads(body)
    assert doc["meta"] == [{"name": "n", "type": "UInt64"}]
    assert int(doc["data"][0]["n"]) >= 3 and isinstance(doc["data"][0]["n"], str)
    assert headers["X-ClickHouse-Query-Id"] == "q1"
    status, body, headers = http(
        f"{server.ui_url}/api/clickhouse-proxy",
        b"DROP TABLE otel_logs",
        {"cookie": cookie},
    )
    assert status == 403 and headers["X-ClickHouse-Exception-Code"] == "164"
    assert body.startswith(b"Code: 164. DB::Exception: ")
    assert server.sql("EXISTS TABLE otel_logs") == [{"result": 1}]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/me"),
        ("GET", "/api/sources"),
        ("GET", "/api/no-such-thing"),
        ("POST", "/api/clickhouse-proxy"),
    ],
)
def test_unauthenticated_gets_401(server: QueryServer, method: str, path: str) -> None:
    for headers in ({}, {"cookie": "connect.sid=forged.value.sig"}):
        status, body, _ = http(
            f"{server.ui_url}{path}", b"SELECT 1" if method == "POST" else None, headers
        )
        assert (status, body) == (401, b"Unauthorized")


def test_unknown_path_gets_expresss_404(server: QueryServer, cookie: str) -> None:
    status, body, headers = http(f"{server.ui_url}/api/team/members", headers={"cookie": cookie})
    assert status == 404
    assert b"<pre>Cannot GET /api/team/members</pre>" in body
    assert headers["Content-Type"].startswith("text/html")


def test_a_session_stays_valid_across_requests_but_not_other_keys(
    server: QueryServer, cookie: str
) -> None:
    name, _, value = cookie.partition("=")
    nonce, _, mac = value.rpartition(".")
    tampered = f"{name}={nonce}.{'A' * len(mac)}"
    assert http(f"{server.ui_url}/api/me", headers={"cookie": tampered})[0] == 401
    assert http(f"{server.ui_url}/api/me", headers={"cookie": cookie})[0] == 200


def test_non_loopback_client_is_refused_and_ingestion_goes_on(
    server: QueryServer, cookie: str
) -> None:
    source = non_loopback_address()
    if source is None:
        pytest.skip("this machine has no non-loopback address to send from")
    raw = request_from(
        source,
        server.ui_port,
        f"GET /api/sources HTTP/1.1\r\nHost: x\r\ncookie: {cookie}\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403"), raw
    assert b"loopback" in body and source.encode() in body
    ingest_one_log(server, "api still ingesting")
    assert wait_sql(server, "SELECT 1 FROM otel_logs WHERE Body = 'api still ingesting'", 1)
