"""How the `hyperdx` CLI reads `hyperdx local`'s data, and the queries it runs.

chDB lets one process own a data directory, so while `hyperdx local` runs the CLI asks it
over its loopback query endpoint (with the ingestion key from the state file); when no server
runs, the CLI opens the directory itself. Every query here is plain ClickStack SQL, so it
works unchanged against a real ClickStack ClickHouse.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hyperdx.local.store import STATE_FILE, QueryResult, default_data_dir

QUERY_PATH = "/hyperdx/v1/query"

#: Minimum SeverityNumber for ``--level`` (OpenTelemetry severity ranges).
LEVELS = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}
_LEVEL_ALIASES = {"warning": "warn", "critical": "fatal", "err": "error"}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_HEX = re.compile(r"^[0-9a-f]+$")


class ClientError(RuntimeError):
    """The data could not be read (server refused, bad input, no data directory)."""


class Reader(Protocol):
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ServerState:
    """What a running `hyperdx local` writes to ``<data_dir>/hyperdx-local.json``."""

    pid: int
    host: str
    http_port: int
    grpc_port: int
    api_key: str

    @property
    def query_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.http_port}{QUERY_PATH}"

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "host": self.host,
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "api_key": self.api_key,
        }


def read_state(data_dir: Path) -> ServerState | None:
    """The running server's state, or None if there is none or its process is gone."""
    try:
        doc = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
        state = ServerState(
            pid=int(doc["pid"]),
            host=str(doc["host"]),
            http_port=int(doc["http_port"]),
            grpc_port=int(doc["grpc_port"]),
            api_key=str(doc["api_key"]),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise ClientError(f"unreadable state file {data_dir / STATE_FILE}: {exc}") from exc
    try:
        os.kill(state.pid, 0)
    except ProcessLookupError:
        return None  # left behind by a killed server
    except PermissionError:
        pass  # alive, owned by someone else
    return state


class HttpReader:
    """Queries through a running server's query endpoint."""

    def __init__(self, state: ServerState, timeout: float = 30.0) -> None:
        self.state = state
        self.timeout = timeout

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        body = json.dumps({"sql": sql, "params": dict(params or {})}).encode("utf-8")
        request = urllib.request.Request(
            self.state.query_url,
            data=body,
            method="POST",
            headers={"content-type": "application/json", "authorization": self.state.api_key},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            if detail.startswith("{"):
                detail = str(json.loads(detail).get("message", detail))
            raise ClientError(f"query failed ({exc.code}): {detail}") from None
        except urllib.error.URLError as exc:
            raise ClientError(
                f"cannot reach hyperdx local (pid {self.state.pid}) at "
                f"{self.state.query_url}: {exc.reason}"
            ) from None
        return QueryResult.from_json(doc)

    def close(self) -> None:
        pass


class DirectReader:
    """Opens the data directory itself (only when no server owns it)."""

    def __init__(self, data_dir: Path) -> None:
        from hyperdx.local.store import Store

        self.store = Store.open(data_dir)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        return self.store.query(sql, params)

    def close(self) -> None:
        self.store.close()


def connect(data_dir: Path | None = None) -> Reader:
    """A reader for ``data_dir`` (default: $HYPERDX_LOCAL_DATA_DIR or the per-user dir)."""
    data_dir = (data_dir or default_data_dir()).expanduser()
    state = read_state(data_dir)
    if state is not None:
        return HttpReader(state)
    if not data_dir.is_dir():
        raise ClientError(
            f"no hyperdx local data at {data_dir}: start `hyperdx local` "
            "(or pass --data-dir / set HYPERDX_LOCAL_DATA_DIR)"
        )
    return DirectReader(data_dir)


def parse_since(value: str | None) -> int | None:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` (bare number = seconds) -> seconds."""
    if value is None:
        return None
    match = _DURATION.match(value)
    if not match:
        raise ClientError(f"--since: {value!r} is not a duration like 30s, 10m, 2h or 1d")
    return int(float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"])


def parse_level(value: str | None) -> int | None:
    if value is None:
        return None
    name = _LEVEL_ALIASES.get(value.lower(), value.lower())
    if name not in LEVELS:
        raise ClientError(f"--level: {value!r} is not one of {', '.join(LEVELS)}")
    return LEVELS[name]


def check_trace_id(value: str) -> str:
    trace_id = value.strip().lower()
    if len(trace_id) != 32 or not _HEX.match(trace_id):
        raise ClientError(f"trace id: {value!r} is not 32 hex characters")
    return trace_id


LOG_COLUMNS = (
    "Timestamp, ServiceName, SeverityText, SeverityNumber, Body, TraceId, SpanId, LogAttributes"
)


def logs(
    reader: Reader,
    *,
    service: str | None = None,
    level: str | None = None,
    text: str | None = None,
    since: str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> list[dict[str, Any]]:
    """Recent log records, oldest first; ``after`` (a Timestamp) keeps only newer-or-equal."""
    where: list[str] = []
    params: dict[str, Any] = {}
    _filter_service_since(where, params, service, since, "Timestamp >= now64(9)")
    min_level = parse_level(level)
    if min_level is not None:
        where.append("SeverityNumber >= {level:UInt8}")
        params["level"] = min_level
    if text:
        where.append("positionCaseInsensitiveUTF8(Body, {text:String}) > 0")
        params["text"] = text
    if after is not None:
        where.append("Timestamp >= toDateTime64({after:String}, 9)")
        params["after"] = after
    sql = (
        f"SELECT {LOG_COLUMNS} FROM otel_logs"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY Timestamp DESC LIMIT {int(limit)}"
    )
    return list(reversed(reader.query(sql, params).rows))


def traces(
    reader: Reader, *, service: str | None = None, since: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """Recent traces, newest first: root span, its service, duration, status, span count."""
    where = ["TraceId != ''"]
    params: dict[str, Any] = {}
    _filter_service_since(where, params, None, since, "Timestamp >= now64(9)")
    having = ""
    if service:
        having = " HAVING countIf(ServiceName = {service:String}) > 0"
        params["service"] = service
    sql = (
        "SELECT TraceId, min(Timestamp) AS Start,"
        " if(countIf(ParentSpanId = '') > 0, argMinIf(SpanName, Timestamp, ParentSpanId = ''),"
        " argMin(SpanName, Timestamp)) AS RootSpan,"
        " if(countIf(ParentSpanId = '') > 0, argMinIf(ServiceName, Timestamp, ParentSpanId = ''),"
        " argMin(ServiceName, Timestamp)) AS Service,"
        " toUInt64(max(toUnixTimestamp64Nano(Timestamp) + toInt64(Duration))"
        " - min(toUnixTimestamp64Nano(Timestamp))) AS DurationNs,"
        " if(countIf(StatusCode = 'Error') > 0, 'Error',"
        " if(countIf(StatusCode = 'Ok') > 0, 'Ok', 'Unset')) AS Status,"
        " count() AS Spans, countIf(StatusCode = 'Error') AS Errors"
        f" FROM otel_traces WHERE {' AND '.join(where)} GROUP BY TraceId{having}"
        f" ORDER BY Start DESC LIMIT {int(limit)}"
    )
    return reader.query(sql, params).rows


def trace(reader: Reader, trace_id: str) -> dict[str, Any]:
    """One trace's spans (start order) and the log records that carry its TraceId."""
    trace_id = check_trace_id(trace_id)
    spans = reader.query(
        "SELECT Timestamp, toUnixTimestamp64Nano(Timestamp) AS StartNs, Duration, SpanId,"
        " ParentSpanId, SpanName, SpanKind, ServiceName, StatusCode, StatusMessage,"
        " SpanAttributes, Events.Name AS EventNames, Events.Attributes AS EventAttributes"
        " FROM otel_traces WHERE TraceId = {id:String} ORDER BY Timestamp, SpanId",
        {"id": trace_id},
    ).rows
    log_rows = reader.query(
        "SELECT Timestamp, toUnixTimestamp64Nano(Timestamp) AS TimeNs, SpanId, ServiceName,"
        " SeverityText, SeverityNumber, Body, LogAttributes"
        " FROM otel_logs WHERE TraceId = {id:String} ORDER BY Timestamp",
        {"id": trace_id},
    ).rows
    return {"trace_id": trace_id, "spans": spans, "logs": log_rows}


METRIC_TABLES = {
    "otel_metrics_gauge": "gauge",
    "otel_metrics_sum": "sum",
    "otel_metrics_histogram": "histogram",
    "otel_metrics_exponential_histogram": "exponential_histogram",
    "otel_metrics_summary": "summary",
}
# What one point's "value" is, per table: the number itself, or a histogram's sum/count.
_VALUE_EXPR = {
    "otel_metrics_gauge": "Value",
    "otel_metrics_sum": "Value",
    "otel_metrics_histogram": "Sum",
    "otel_metrics_exponential_histogram": "Sum",
    "otel_metrics_summary": "Sum",
}
_COUNT_EXPR = {
    "otel_metrics_gauge": "0",
    "otel_metrics_sum": "0",
    "otel_metrics_histogram": "Count",
    "otel_metrics_exponential_histogram": "Count",
    "otel_metrics_summary": "Count",
}


def _filter_service_since(
    where: list[str],
    params: dict[str, Any],
    service: str | None,
    since: str | None,
    time_from_now: str,
) -> None:
    """Add the shared `--service` / `--since` conditions (bound as typed parameters)."""
    if service:
        where.append("ServiceName = {service:String}")
        params["service"] = service
    seconds = parse_since(since)
    if seconds is not None:
        where.append(f"{time_from_now} - toIntervalSecond({{since:UInt32}})")
        params["since"] = seconds


def metrics(
    reader: Reader, *, service: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """Every metric name with its kind, unit, services and the latest value (summed over
    attribute sets at the latest timestamp), sorted by name."""
    params: dict[str, Any] = {}
    where = ["1"]
    _filter_service_since(where, params, service, since, "TimeUnix >= now()")
    parts = [
        f"SELECT '{kind}' AS Kind, MetricName, MetricUnit, ServiceName, TimeUnix,"
        f" toFloat64({_VALUE_EXPR[table]}) AS V, toUInt64({_COUNT_EXPR[table]}) AS C"
        f" FROM {table} WHERE {' AND '.join(where)}"
        for table, kind in METRIC_TABLES.items()
    ]
    per_time = (
        "SELECT MetricName, Kind, any(MetricUnit) AS Unit, groupUniqArray(ServiceName) AS Svcs,"
        " count() AS N, TimeUnix, sum(V) AS V, sum(C) AS C"
        f" FROM ({' UNION ALL '.join(parts)}) GROUP BY MetricName, Kind, TimeUnix"
    )
    sql = (
        "SELECT MetricName, any(Kind) AS Kind, any(Unit) AS Unit,"
        " arrayDistinct(arrayFlatten(groupArray(Svcs))) AS Services, sum(N) AS Points,"
        " max(TimeUnix) AS Latest, argMax(V, TimeUnix) AS LatestValue,"
        " argMax(C, TimeUnix) AS LatestCount,"
        " arrayMap(x -> x.2, arraySort(x -> x.1, groupArray((TimeUnix, V)))) AS Values"
        f" FROM ({per_time}) GROUP BY MetricName ORDER BY MetricName"
    )
    rows = reader.query(sql, params).rows
    for row in rows:
        row["Services"] = sorted(row["Services"])
    return rows


def metric_series(
    reader: Reader, name: str, *, service: str | None = None, since: str | None = None
) -> dict[str, Any]:
    """One metric over time: points per attribute set (value summed per timestamp)."""
    params: dict[str, Any] = {"name": name}
    where = ["MetricName = {name:String}"]
    _filter_service_since(where, params, service, since, "TimeUnix >= now()")
    for table, kind in METRIC_TABLES.items():
        sql = (
            f"SELECT TimeUnix, ServiceName, Attributes, sum(toFloat64({_VALUE_EXPR[table]})) AS"
            f" Value, sum(toUInt64({_COUNT_EXPR[table]})) AS Count, any(MetricUnit) AS Unit"
            f" FROM {table} WHERE {' AND '.join(where)}"
            " GROUP BY TimeUnix, ServiceName, Attributes ORDER BY TimeUnix"
        )
        points = reader.query(sql, params).rows
        if points:
            unit = points[0].pop("Unit", "")
            for point in points:
                point.pop("Unit", None)
            return {"name": name, "kind": kind, "unit": unit, "points": points}
    raise ClientError(f"--name: no metric named {name!r}")
