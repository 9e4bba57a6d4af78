"""The chDB store: ClickStack's schema as REFERENCE.md section 3 states it, inserts, ownership.

One store (one data directory) is shared by the module: chDB allows one data path per
process, and opening costs ~0.4 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("chdb")

from hyperdx.local.store import DataDirInUse, Store, StoreError  # noqa: E402

MAP = "Map(LowCardinality(String), String)"
LC = "LowCardinality(String)"
MAPS = f"Array({MAP})"

LOG_COLUMNS = [
    ("Timestamp", "DateTime64(9)", ""),
    ("TraceId", "String", ""),
    ("SpanId", "String", ""),
    ("TraceFlags", "UInt8", ""),
    ("SeverityText", LC, ""),
    ("SeverityNumber", "UInt8", ""),
    ("ServiceName", LC, ""),
    ("Body", "String", ""),
    ("ResourceSchemaUrl", LC, ""),
    ("ResourceAttributes", MAP, ""),
    ("ScopeSchemaUrl", LC, ""),
    ("ScopeName", "String", ""),
    ("ScopeVersion", LC, ""),
    ("ScopeAttributes", MAP, ""),
    ("LogAttributes", MAP, ""),
    ("EventName", "String", ""),
    *[
        (f"__hdx_materialized_{k}", LC, "MATERIALIZED")
        for k in (
            "k8s.cluster.name",
            "k8s.container.name",
            "k8s.deployment.name",
            "k8s.namespace.name",
            "k8s.node.name",
            "k8s.pod.name",
            "k8s.pod.uid",
            "deployment.environment.name",
        )
    ],
    ("ResourceAttributeItems", "Array(String)", "ALIAS"),
    ("ScopeAttributeItems", "Array(String)", "ALIAS"),
    ("LogAttributeItems", "Array(String)", "ALIAS"),
]

TRACE_COLUMNS = [
    ("Timestamp", "DateTime64(9)", ""),
    ("TraceId", "String", ""),
    ("SpanId", "String", ""),
    ("ParentSpanId", "String", ""),
    ("TraceState", "String", ""),
    ("SpanName", LC, ""),
    ("SpanKind", LC, ""),
    ("ServiceName", LC, ""),
    ("ResourceAttributes", MAP, ""),
    ("ScopeName", "String", ""),
    ("ScopeVersion", "String", ""),
    ("SpanAttributes", MAP, ""),
    ("Duration", "UInt64", ""),
    ("StatusCode", LC, ""),
    ("StatusMessage", "String", ""),
    ("Events.Timestamp", "Array(DateTime64(9))", ""),
    ("Events.Name", f"Array({LC})", ""),
    ("Events.Attributes", MAPS, ""),
    ("Links.TraceId", "Array(String)", ""),
    ("Links.SpanId", "Array(String)", ""),
    ("Links.TraceState", "Array(String)", ""),
    ("Links.Attributes", MAPS, ""),
    ("__hdx_materialized_rum.sessionId", "String", "MATERIALIZED"),
    ("SampleRate", "UInt64", "MATERIALIZED"),
    ("ResourceAttributeItems", "Array(String)", "ALIAS"),
    ("SpanAttributeItems", "Array(String)", "ALIAS"),
]

METRIC_HEAD = [
    ("ResourceAttributes", MAP),
    ("ResourceSchemaUrl", "String"),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("ScopeAttributes", MAP),
    ("ScopeDroppedAttrCount", "UInt32"),
    ("ScopeSchemaUrl", "String"),
    ("ServiceName", LC),
    ("MetricName", LC),
    ("MetricDescription", "String"),
    ("MetricUnit", "String"),
    ("Attributes", MAP),
    ("StartTimeUnix", "DateTime"),
    ("TimeUnix", "DateTime"),
]
EXEMPLARS = [
    ("Exemplars.FilteredAttributes", MAPS),
    ("Exemplars.TimeUnix", "Array(DateTime)"),
    ("Exemplars.Value", "Array(Float64)"),
    ("Exemplars.SpanId", "Array(String)"),
    ("Exemplars.TraceId", "Array(String)"),
]
HIST_TAIL = [("Flags", "UInt32"), ("Min", "Float64"), ("Max", "Float64")]
AGG = [("AggregationTemporality", "Int32")]
METRIC_COLUMNS = {
    "otel_metrics_gauge": [("Value", "Float64"), ("Flags", "UInt32"), *EXEMPLARS],
    "otel_metrics_sum": [
        ("Value", "Float64"),
        ("Flags", "UInt32"),
        *EXEMPLARS,
        *AGG,
        ("IsMonotonic", "Bool"),
    ],
    "otel_metrics_histogram": [
        ("Count", "UInt64"),
        ("Sum", "Float64"),
        ("BucketCounts", "Array(UInt64)"),
        ("ExplicitBounds", "Array(Float64)"),
        *EXEMPLARS,
        *HIST_TAIL,
        *AGG,
    ],
    "otel_metrics_exponential_histogram": [
        ("Count", "UInt64"),
        ("Sum", "Float64"),
        ("Scale", "Int32"),
        ("ZeroCount", "UInt64"),
        ("PositiveOffset", "Int32"),
        ("PositiveBucketCounts", "Array(UInt64)"),
        ("NegativeOffset", "Int32"),
        ("NegativeBucketCounts", "Array(UInt64)"),
        *EXEMPLARS,
        *HIST_TAIL,
        *AGG,
    ],
    "otel_metrics_summary": [
        ("Count", "UInt64"),
        ("Sum", "Float64"),
        ("ValueAtQuantiles.Quantile", "Array(Float64)"),
        ("ValueAtQuantiles.Value", "Array(Float64)"),
        ("Flags", "UInt32"),
    ],
}
SESSION_COLUMNS = [
    ("Timestamp", "DateTime64(9)", ""),
    ("TimestampTime", "DateTime", "DEFAULT"),
    *[(n, t, k) for n, t, k in LOG_COLUMNS[1:15]],
]
ROLLUP_COLUMNS = [
    ("Timestamp", "DateTime"),
    ("ColumnIdentifier", LC),
    ("Key", LC),
    ("Value", "String"),
    ("count", "UInt64"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store.open(tmp_path_factory.mktemp("store"))
    yield s
    s.close()


def ts(offset_ns: int = 0) -> tuple[int, str]:
    """A fresh timestamp (older rows would fall to the 30-day TTL) and its JSON form."""
    ns = time.time_ns() + offset_ns
    return ns, f"{ns // 10**9}.{ns % 10**9:09d}"


def columns(store: Store, table: str) -> list[tuple[str, str, str]]:
    res = store.query(
        "SELECT name, type, default_kind FROM system.columns "
        "WHERE database = 'default' AND table = {t:String} ORDER BY position",
        {"t": table},
    )
    return [(r["name"], r["type"], r["default_kind"]) for r in res.rows]


def table_info(store: Store, table: str) -> dict[str, str]:
    res = store.query(
        "SELECT engine, partition_key, sorting_key, primary_key, create_table_query "
        "FROM system.tables WHERE database = 'default' AND name = {t:String}",
        {"t": table},
    )
    assert res.rows, f"table {table} missing"
    return res.rows[0]


def test_every_clickstack_table_exists(store: Store) -> None:
    res = store.query("SELECT name, engine FROM system.tables WHERE database = 'default'")
    tables = {r["name"]: r["engine"] for r in res.rows}
    assert tables == {
        "otel_logs": "MergeTree",
        "otel_traces": "MergeTree",
        "hyperdx_sessions": "MergeTree",
        "otel_metrics_gauge": "MergeTree",
        "otel_metrics_sum": "MergeTree",
        "otel_metrics_histogram": "MergeTree",
        "otel_metrics_exponential_histogram": "MergeTree",
        "otel_metrics_summary": "MergeTree",
        "otel_logs_kv_rollup_15m": "SummingMergeTree",
        "otel_traces_kv_rollup_15m": "SummingMergeTree",
        "otel_logs_attr_kv_rollup_15m_mv": "MaterializedView",
        "otel_traces_kv_rollup_15m_mv": "MaterializedView",
    }


def test_logs_columns_keys_and_indexes(store: Store) -> None:
    assert columns(store, "otel_logs") == LOG_COLUMNS
    info = table_info(store, "otel_logs")
    assert info["partition_key"] == "toDate(Timestamp)"
    assert info["sorting_key"] == "toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp"
    ddl = info["create_table_query"]
    assert "TTL toDateTime(Timestamp) + toIntervalDay(30)" in ddl
    for setting in ("ttl_only_drop_parts = 1", "enable_block_number_column = 1"):
        assert setting in ddl
    assert "INDEX idx_lower_body lower(Body) TYPE text(tokenizer = 'splitByNonAlpha')" in ddl
    for idx in ("idx_trace_id", "idx_res_attr_items", "idx_log_attr_key"):
        assert f"INDEX {idx} " in ddl


def test_traces_columns_keys_and_indexes(store: Store) -> None:
    assert columns(store, "otel_traces") == TRACE_COLUMNS
    info = table_info(store, "otel_traces")
    assert info["sorting_key"] == "ServiceName, SpanName, toDateTime(Timestamp)"
    ddl = info["create_table_query"]
    assert "TTL toDate(Timestamp) + toIntervalDay(30)" in ddl
    assert "CODEC(T64, ZSTD(1))" in ddl
    for idx in ("idx_trace_id", "idx_rum_session_id", "idx_duration", "idx_lower_span_name"):
        assert f"INDEX {idx} " in ddl


@pytest.mark.parametrize("table", sorted(METRIC_COLUMNS))
def test_metric_tables(store: Store, table: str) -> None:
    got = [(n, t) for n, t, _ in columns(store, table)]
    assert got == METRIC_HEAD + METRIC_COLUMNS[table]
    info = table_info(store, table)
    assert info["partition_key"] == "toDate(TimeUnix)"
    assert info["sorting_key"] == (
        "ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix"
    )
    assert "TTL TimeUnix + toIntervalDay(30)" in info["create_table_query"]


def test_sessions_and_rollup_tables(store: Store) -> None:
    assert columns(store, "hyperdx_sessions") == SESSION_COLUMNS
    info = table_info(store, "hyperdx_sessions")
    assert info["primary_key"] == "ServiceName, TimestampTime"
    assert info["sorting_key"] == "ServiceName, TimestampTime, Timestamp"
    for table in ("otel_logs_kv_rollup_15m", "otel_traces_kv_rollup_15m"):
        assert [(n, t) for n, t, _ in columns(store, table)] == ROLLUP_COLUMNS
        assert table_info(store, table)["sorting_key"] == "ColumnIdentifier, Key, Timestamp, Value"


def test_insert_round_trip_and_derived_columns(store: Store) -> None:
    ns, stamp = ts()
    n = store.insert(
        "otel_logs",
        [
            {
                "Timestamp": stamp,
                "TraceId": "0af7651916cd43dd8448eb211c80319c",
                "SpanId": "b7ad6b7169203331",
                "SeverityText": "warning",
                "SeverityNumber": 13,
                "ServiceName": "store-test",
                "Body": "Payment Declined for order 42",
                "ResourceAttributes": {
                    "service.name": "store-test",
                    "k8s.pod.name": "pod-1",
                    "deployment.environment.name": "dev",
                },
                "LogAttributes": {"order": "42"},
            }
        ],
    )
    assert n == 1
    row = store.query(
        "SELECT toUnixTimestamp64Nano(Timestamp) AS ns, `__hdx_materialized_k8s.pod.name` AS pod,"
        " `__hdx_materialized_deployment.environment.name` AS env, LogAttributeItems,"
        " hasAllTokens(lower(Body), 'declined') AS hit"
        " FROM otel_logs WHERE ServiceName = 'store-test'"
    ).rows
    assert row == [
        {"ns": ns, "pod": "pod-1", "env": "dev", "LogAttributeItems": ["order=42"], "hit": True}
    ]
    rollup = store.query(
        "SELECT Key, Value, sum(count) AS n FROM otel_logs_kv_rollup_15m"
        " WHERE Key IN ('ServiceName', '__hdx_materialized_k8s.pod.name')"
        " AND Value IN ('store-test', 'pod-1') GROUP BY Key, Value ORDER BY Key"
    ).rows
    assert rollup == [
        {"Key": "ServiceName", "Value": "store-test", "n": 1},
        {"Key": "__hdx_materialized_k8s.pod.name", "Value": "pod-1", "n": 1},
    ]


def test_span_sample_rate_events_and_rollup(store: Store) -> None:
    _, stamp = ts()
    store.insert(
        "otel_traces",
        [
            {
                "Timestamp": stamp,
                "TraceId": "1" * 32,
                "SpanId": "2" * 16,
                "SpanName": "GET /checkout",
                "SpanKind": "Server",
                "ServiceName": "store-test",
                "SpanAttributes": {"SampleRate": "10"},
                "ResourceAttributes": {"rum.sessionId": "s-1"},
                "Duration": 12_345_678_901,
                "StatusCode": "Error",
                "Events.Timestamp": [stamp],
                "Events.Name": ["exception"],
                "Events.Attributes": [{"exception.type": "ValueError"}],
            },
            {"Timestamp": stamp, "SpanName": "x", "ServiceName": "store-test", "SpanId": "3" * 16},
        ],
    )
    rows = store.query(
        "SELECT SpanName, SampleRate, Duration, `__hdx_materialized_rum.sessionId` AS sid,"
        " Events.Attributes[indexOf(Events.Name, 'exception')]['exception.type'] AS exc"
        " FROM otel_traces WHERE ServiceName = 'store-test' ORDER BY SpanName"
    ).rows
    assert rows == [
        {
            "SpanName": "GET /checkout",
            "SampleRate": 10,
            "Duration": 12_345_678_901,
            "sid": "s-1",
            "exc": "ValueError",
        },
        {"SpanName": "x", "SampleRate": 1, "Duration": 0, "sid": "", "exc": ""},
    ]
    kinds = store.query(
        "SELECT Value, sum(count) AS n FROM otel_traces_kv_rollup_15m"
        " WHERE Key = 'StatusCode' GROUP BY Value ORDER BY Value"
    ).rows
    assert {"Value": "Error", "n": 1} in kinds


def test_metric_time_truncated_and_params(store: Store) -> None:
    _, stamp = ts()
    store.insert(
        "otel_metrics_sum",
        [
            {
                "ServiceName": "store-test",
                "MetricName": "app.checkouts",
                "TimeUnix": stamp.split(".")[0],
                "StartTimeUnix": stamp.split(".")[0],
                "Value": 3,
                "AggregationTemporality": 2,
                "IsMonotonic": True,
            }
        ],
    )
    res = store.query(
        "SELECT MetricName, Value, IsMonotonic FROM otel_metrics_sum WHERE MetricName = {m:String}",
        {"m": "app.checkouts"},
    )
    assert res.columns == [("MetricName", LC), ("Value", "Float64"), ("IsMonotonic", "Bool")]
    assert res.rows == [{"MetricName": "app.checkouts", "Value": 3, "IsMonotonic": True}]


def test_bad_table_and_bad_sql_raise_named_errors(store: Store) -> None:
    with pytest.raises(StoreError, match="table: 'otel_logz'"):
        store.insert("otel_logz", [{"Body": "x"}])
    with pytest.raises(StoreError, match="UNKNOWN_IDENTIFIER"):
        store.query("SELECT no_such_column FROM otel_logs")
    with pytest.raises(StoreError, match="leave out its FORMAT clause"):
        store.query("SELECT 1 FORMAT CSV")
    # the store keeps working after a failed statement
    assert store.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_second_process_is_refused_naming_the_owner(store: Store) -> None:
    code = (
        "import sys\n"
        "from hyperdx.local.store import Store, DataDirInUse\n"
        "try:\n"
        f"    Store.open({str(store.data_dir)!r})\n"
        "except DataDirInUse as e:\n"
        "    print(e.pid, e); sys.exit(3)\n"
    )
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith(f"{os.getpid()} ")
    assert f"in use by process {os.getpid()}" in proc.stdout
    assert time.monotonic() - t0 < 10
    # and we still own it
    assert store.query("SELECT count() AS n FROM otel_logs").rows[0]["n"] >= 1


def test_lock_in_same_process_and_error_type(store: Store, tmp_path: Path) -> None:
    with pytest.raises(DataDirInUse) as info:
        Store.open(store.data_dir)
    assert info.value.pid == os.getpid()


def test_concurrent_inserts_are_group_committed_and_a_bad_one_fails_alone(store: Store) -> None:
    import threading

    _, stamp = ts()
    good = [
        {"Timestamp": stamp, "ServiceName": "group-commit", "Body": f"r{i}"} for i in range(300)
    ]
    errors: list[BaseException] = []
    results: list[int] = []

    def write(rows: list[dict[str, object]]) -> None:
        try:
            results.append(store.insert("otel_logs", rows))
        except StoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(good,)) for _ in range(8)]
    threads.append(threading.Thread(target=write, args=([{"Timestamp": "not a time"}],)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [300] * 8
    assert len(errors) == 1 and "insert into otel_logs failed" in str(errors[0])
    count = store.query("SELECT count() AS n FROM otel_logs WHERE ServiceName = 'group-commit'")
    assert count.rows == [{"n": 2400}]
