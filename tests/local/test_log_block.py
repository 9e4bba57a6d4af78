"""Logs mapped straight to a Native block store the same rows as the JSONEachRow dict path.

Each request is stored twice in real chDB, once as the dict rows of ``log_rows_by_table``
(JSONEachRow, the reference) and once as the block of ``log_tables``, and every column of
every row (in order) must be equal, for inputs covering every value type and edge.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from hyperdx.local import native, rows
from hyperdx.local.log_block import LOG_COLUMNS, RawAttributesRequest, log_tables
from hyperdx.local.store import Store, StoreError

NOW = time.time_ns()
MATERIALIZED = ", ".join(
    f"`__hdx_materialized_{name}`"
    for name in (
        "k8s.cluster.name",
        "k8s.pod.name",
        "deployment.environment.name",
    )
)


def av(value: Any) -> AnyValue:
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[av(v) for v in value]))
    return AnyValue(kvlist_value=KeyValueList(values=kvs(value)))


def kvs(values: dict[str, Any] | list[tuple[str, Any]]) -> list[KeyValue]:
    pairs = values.items() if isinstance(values, dict) else values
    return [KeyValue(key=k, value=av(v)) for k, v in pairs]


SCALARS: dict[str, Any] = {
    "s": "text",
    "empty": "",
    "int": 42,
    "zero": 0,
    "neg": -(2**63),
    "big": 2**63 - 1,
    "double": 0.1,
    "whole": 3.0,
    "tiny": 1e-7,
    "huge": 1e21,
    "nan": math.nan,
    "inf": -math.inf,
    "true": True,
    "false": False,
    "bytes": b"\xff\xfe\x00 not UTF-8",
    "unset": None,
    "utf8": "żółw 🐢 中文 \u2028 nul\x00end",
    "long": "v" * 300,  # a two-byte length prefix
    "k" * 200: "long key",
}


def record(index: int, **fields: Any) -> LogRecord:
    base: dict[str, Any] = {
        "time_unix_nano": NOW + index,
        "severity_number": 9,
        "severity_text": "INFO",
        "body": av(f"line {index}"),
        "trace_id": bytes(range(1, 17)),
        "span_id": bytes(range(1, 9)),
    }
    base.update(fields)
    return LogRecord(**base)


def varied_request() -> ExportLogsServiceRequest:
    """Every value type and edge, across two resources and four scopes."""
    records_a = [
        record(0, attributes=kvs(SCALARS)),
        record(1, attributes=kvs([("dup", "first"), ("dup", "last"), ("x", 1)])),
        record(2, attributes=kvs({"nested": {"a": [1, {"b": 2.5}]}, "arr": [1, "two", None]})),
        record(3, body=av('prefix {"level": "warn", "n": 7, "obj": {"k": "v"}} suffix')),
        record(4, body=av({"map": "body", "num": 1, "inner": {"deep": True}})),
        record(5, body=av([1, "a", 2.5])),
        record(6, body=av(12345)),
        record(7, body=av(2.5)),
        record(8, body=av(True)),
        record(9, body=av(b"\x00\xffraw")),
        record(10, body=AnyValue()),
        record(11, severity_number=0, severity_text="", body=av("ERROR: disk full")),
        record(12, severity_number=0, severity_text="", attributes=kvs({"level": "Debug"})),
        record(13, severity_number=17, severity_text=""),
        record(14, severity_number=0, severity_text="Warning"),
        record(15, severity_number=300, severity_text="CUSTOM"),
        record(16, flags=0x1FF, event_name="app.event"),
        record(17, trace_id=b"", span_id=b""),
        record(18, trace_id=bytes(16), span_id=bytes(8)),
        record(19, trace_id=b"\x01\x02\x03", span_id=b"\xff" * 40),
        record(20, time_unix_nano=0, observed_time_unix_nano=NOW + 20),
        record(21, time_unix_nano=0, observed_time_unix_nano=0),
        record(22, time_unix_nano=946_684_800_123_456_789),  # 2000-01-01, pre-"<sec>.<ns>"
        record(23, time_unix_nano=10**18),  # the first "<sec>.<ns>" instant
        record(24, time_unix_nano=2**64 - 1),  # past DateTime64(9): clamped
        record(25, body=av("x" * 100_000), attributes=kvs({"big": "y" * 70_000})),
        record(26, body=av("session"), attributes=kvs({"rr-web.event": "1", "a": 2})),
        record(27, body=av("{not json} {"), attributes=kvs({"k": "v"})),
        record(28, severity_text="Info", body=av("no attributes")),
        # The same raw attributes again: a repeated set is mapped once per request and
        # reused, so each must map as it did the first time (or as the transform maps it).
        record(29, attributes=kvs([("dup", "first"), ("dup", "last"), ("x", 1)])),
        record(31, attributes=kvs({"k": "v"})),  # first seen on a record the body made JSON
        record(32, attributes=kvs(SCALARS), trace_id=bytes(16)),
        record(33, body=av("session again"), attributes=kvs({"rr-web.event": "1", "a": 2})),
        record(34, body=av('{"level": "warn"}'), attributes=kvs(SCALARS)),
        record(35, body=av("x" * 123)),  # its length byte is "{": still a plain body
        record(36, body=av("y" * 126 + "{")),  # the longest one-byte length, with "{"
        record(37, body=av("")),
    ]
    scope_a = ScopeLogs(
        scope=InstrumentationScope(name="app", version="1.2", attributes=kvs({"scope.k": 1})),
        schema_url="https://opentelemetry.io/schemas/1.26.0",
        log_records=records_a,
    )
    scope_b = ScopeLogs(scope=InstrumentationScope(name="other"), log_records=[record(30)])
    scope_empty = ScopeLogs(scope=InstrumentationScope(name="empty"))
    scope_sessions = ScopeLogs(
        scope=InstrumentationScope(name="replay"),
        log_records=[record(40, attributes=kvs({"rr-web.event": 2}))],
    )
    resource_a = ResourceLogs(
        resource=Resource(
            attributes=kvs(
                {
                    "service.name": "svc-a",
                    "k8s.cluster.name": "prod",
                    "k8s.pod.name": "pod-1",
                    "deployment.environment.name": "test",
                    "host.cpus": 2,
                }
            )
        ),
        schema_url="https://example.com/resource",
        scope_logs=[scope_a, scope_empty, scope_sessions, scope_b],
    )
    resource_b = ResourceLogs(  # no service.name, no resource attributes
        scope_logs=[ScopeLogs(log_records=[record(50), record(51, body=av("Ünïcode"))])]
    )
    return ExportLogsServiceRequest(resource_logs=[resource_a, resource_b])


def sdk_like_request(count: int, seed: int) -> ExportLogsServiceRequest:
    """What an SDK's logging handler sends: scalar attributes repeating across records."""
    records = [
        record(
            index,
            body=av(f"GET /items/{(index * seed) % 97} took {index % 13} ms"),
            attributes=kvs(
                {"code.filepath": "app.py", "code.lineno": 10 + index % 5, "ok": index % 2 == 0}
            ),
        )
        for index in range(count)
    ]
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=kvs({"service.name": f"svc-{seed}"})),
                scope_logs=[ScopeLogs(scope=InstrumentationScope(name="log"), log_records=records)],
            )
        ]
    )


def stored_then_emptied(store: Store) -> list[dict[str, Any]]:
    """otel_logs' rows in insertion order (a part per day partition), every column; then
    the table is emptied for the next insert. Rows past the 30-day TTL are left out (their
    parts are dropped at some point after the insert; the clamped year 2262 wraps around
    toDateTime in the TTL expression): see the Timestamp test for those."""
    result = store.query(
        f"SELECT *, {MATERIALIZED} FROM otel_logs "
        "WHERE Timestamp BETWEEN now() - INTERVAL 20 DAY AND now() + INTERVAL 1 DAY "
        "ORDER BY _block_number, _block_offset"
    )
    store.query("TRUNCATE TABLE otel_logs")
    return result.rows


@pytest.mark.parametrize("make", [varied_request, lambda: sdk_like_request(600, 7)])
def test_a_block_stores_exactly_the_rows_of_the_dict_mapping(tmp_path: Path, make: Any) -> None:
    request = make()
    reference = rows.log_rows_by_table(request)
    mapped = log_tables(request)
    # session-replay records stay row dicts, the same ones
    assert mapped[rows.SESSIONS_TABLE] == reference[rows.SESSIONS_TABLE]
    block = mapped[rows.LOGS_TABLE]
    assert isinstance(block, native.Block)
    assert block.count == len(reference[rows.LOGS_TABLE]) > 0
    with Store.open(tmp_path) as store:
        store.insert(rows.LOGS_TABLE, reference[rows.LOGS_TABLE])
        old = stored_then_emptied(store)
        store.insert_block(rows.LOGS_TABLE, block)
        new = stored_then_emptied(store)
    recent = [
        row
        for row in reference[rows.LOGS_TABLE]
        if "-" not in row["Timestamp"] and abs(float(row["Timestamp"]) - NOW / 1e9) < 86_400
    ]
    assert len(new) == len(old) == len(recent) > 0
    for index, (old_row, new_row) in enumerate(zip(old, new, strict=True)):
        assert new_row == old_row, f"row {index} differs"


def test_block_timestamps_are_the_nanoseconds_chdb_reads_from_the_json_text(
    tmp_path: Path,
) -> None:
    """Every Timestamp of the block (read from its first column) equals what chDB parses
    from the dict path's DateTime64 text: pre-2001 dates, zero, and the clamped far future
    included (rows the TTL would drop from the table)."""
    request = varied_request()
    texts = [row["Timestamp"] for row in rows.log_rows_by_table(request)[rows.LOGS_TABLE]]
    block = log_tables(request)[rows.LOGS_TABLE]
    payload = block.payload
    header = native.varint(16) + native.varint(block.count)
    header += native.string("Timestamp") + native.string("DateTime64(9)")
    assert payload.startswith(header)
    column = payload[len(header) : len(header) + 8 * block.count]
    from_block = [int.from_bytes(column[i : i + 8], "little") for i in range(0, len(column), 8)]
    json_rows = " ".join(f'{{"t":"{text}"}}' for text in texts)
    with Store.open(tmp_path) as store:
        parsed = store.query(
            "SELECT toUnixTimestamp64Nano(t) AS n "
            "FROM format(JSONEachRow, 't DateTime64(9)', {rows:String})",
            {"rows": json_rows},
        ).rows
    assert from_block == [int(row["n"]) for row in parsed]
    assert {0, 946_684_800_123_456_789, 10**18, 2**63 - 1} <= set(from_block)


def test_varied_request_reaches_the_edges_it_names() -> None:
    """The comparison above is only as good as its input: check the input covers them."""
    mapped = rows.log_rows_by_table(varied_request())
    logs = mapped[rows.LOGS_TABLE]
    assert len(mapped[rows.SESSIONS_TABLE]) == 3
    attributes = [row["LogAttributes"] for row in logs]
    assert attributes.count({"dup": "last", "x": "1"}) == 2  # a repeated key, twice
    assert attributes.count({"k": "v"}) == 2
    bodies = {row["Body"] for row in logs}
    assert {"12345", "2.5", "true", "AP9yYXc=", "", '[1,"a",2.5]'} <= bodies
    assert any(row["LogAttributes"].get("nested.a.1.b") == "2.5" for row in logs)  # transform
    assert any(row["LogAttributes"].get("level") == "warn" for row in logs)  # JSON in body
    assert {"error", "debug", "warning", "custom"} <= {row["SeverityText"] for row in logs}
    assert {row["Timestamp"][:4] for row in logs} >= {"1970", "2000", "1000", "9223"}
    assert {row["ServiceName"] for row in logs} == {"svc-a", ""}


def test_a_request_without_log_rows_gives_no_block() -> None:
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                scope_logs=[
                    ScopeLogs(log_records=[record(0, attributes=kvs({"rr-web.event": 1}))]),
                    ScopeLogs(),
                ]
            )
        ]
    )
    mapped = log_tables(request)
    assert mapped[rows.LOGS_TABLE] == []
    assert mapped[rows.SESSIONS_TABLE] == rows.log_rows_by_table(request)[rows.SESSIONS_TABLE]


def test_native_string_and_varint_encoding() -> None:
    assert native.varint(0) == b"\x00"
    assert native.varint(127) == b"\x7f"
    assert native.varint(128) == b"\x80\x01"
    assert native.varint(300) == b"\xac\x02"
    assert native.string("é") == b"\x02\xc3\xa9"
    assert native.string("a" * 200)[:2] == b"\xc8\x01"


def test_store_refuses_a_block_for_another_tables_columns(tmp_path: Path) -> None:
    block = log_tables(sdk_like_request(3, 1))[rows.LOGS_TABLE]
    with Store.open(tmp_path) as store:
        with pytest.raises(StoreError, match="otel_traces"):
            store.insert_block("otel_traces", block)
        wrong = native.Block(LOG_COLUMNS[:-1], block.payload, block.count)
        with pytest.raises(StoreError, match="otel_logs"):
            store.insert_block("otel_logs", wrong)
        assert store.query("SELECT count() AS n FROM otel_logs").rows == [{"n": 0}]


def test_blocks_and_json_rows_queued_together_are_all_stored_once(tmp_path: Path) -> None:
    """Concurrent writers of both formats into one table: each insert takes one format,
    every row lands exactly once, and a bad JSON request fails alone."""
    requests = [sdk_like_request(50, seed) for seed in range(1, 9)]
    errors: list[BaseException] = []
    with Store.open(tmp_path) as store:

        def write(index: int) -> None:
            try:
                if index % 2:
                    store.insert_block("otel_logs", log_tables(requests[index])["otel_logs"])
                else:
                    store.insert("otel_logs", rows.log_rows(requests[index]))
            except BaseException as error:  # noqa: BLE001 - collected for the assertion
                errors.append(error)

        def bad() -> None:
            with pytest.raises(StoreError):
                store.insert("otel_logs", [{"Timestamp": "not a time", "Body": "bad"}])

        threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
        threads.append(threading.Thread(target=bad))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        counts = store.query(
            "SELECT ServiceName AS s, count() AS n FROM otel_logs GROUP BY s ORDER BY s"
        ).rows
    assert counts == [{"s": f"svc-{seed}", "n": 50} for seed in range(1, 9)]


def test_raw_attributes_request_reads_the_same_bytes_with_attributes_as_raw_pairs() -> None:
    request = varied_request()
    data = request.SerializeToString()
    raw = RawAttributesRequest.FromString(data)
    assert raw.SerializeToString() == data  # the same wire format, nothing lost
    first = raw.resource_logs[0].scope_logs[0].log_records[0]
    assert [KeyValue.FromString(item) for item in first.attributes] == list(
        request.resource_logs[0].scope_logs[0].log_records[0].attributes
    )
    assert log_tables(raw)[rows.LOGS_TABLE] == log_tables(request)[rows.LOGS_TABLE]


def test_receivers_decode_logs_for_blocks_only_for_a_block_sink_and_protobuf() -> None:
    from hyperdx.local import wire
    from hyperdx.local.sinks import MemorySink
    from hyperdx.local.store import ChdbSink

    logs = wire.SIGNALS["/v1/logs"]
    metrics = wire.SIGNALS["/v1/metrics"]  # no block mapping
    block_sink = ChdbSink(store=None)  # type: ignore[arg-type]  # never written to here
    assert wire.request_type(logs, block_sink, wire.PROTOBUF) is RawAttributesRequest
    assert wire.request_type(logs, block_sink, wire.JSON) is ExportLogsServiceRequest
    assert wire.request_type(logs, MemorySink(), wire.PROTOBUF) is ExportLogsServiceRequest
    assert wire.request_type(metrics, block_sink, wire.PROTOBUF) is metrics.request_type


def test_a_malformed_attribute_is_a_400_with_nothing_stored(tmp_path: Path) -> None:
    """Attributes decoded as raw bytes are parsed only while mapping: a KeyValue the full
    decode would refuse (bad UTF-8 in its key) must still be a 400, not a 500."""
    from hyperdx.local import wire
    from hyperdx.local.admission import Admission
    from hyperdx.local.store import ChdbSink

    request = sdk_like_request(3, 1)
    data = request.SerializeToString()
    bad = data.replace(b"\x0a\x0dcode.filepath", b"\x0a\x0dcode.filepat\xff", 1)
    assert bad != data
    logs = wire.SIGNALS["/v1/logs"]
    with pytest.raises(wire.WireError, match="failed to decode protobuf body") as full:
        wire.decode(bad, wire.PROTOBUF, logs.request_type)
    assert full.value.status == 400
    with Store.open(tmp_path) as store:
        sink = ChdbSink(store)
        kind = wire.request_type(logs, sink, wire.PROTOBUF)
        assert kind is RawAttributesRequest
        admission = Admission()
        with pytest.raises(wire.WireError, match="failed to decode protobuf body") as raised:
            wire.ingest(
                admission,
                sink,
                logs,
                lambda: wire.decode(bad, wire.PROTOBUF, kind),
                wire.SinkErrors(),
                time.monotonic(),
            )
        assert raised.value.status == 400
        assert store.query("SELECT count() AS n FROM otel_logs").rows == [{"n": 0}]
        # and the well-formed request still goes through the same route
        stored = wire.ingest(
            admission,
            sink,
            logs,
            lambda: wire.decode(data, wire.PROTOBUF, kind),
            wire.SinkErrors(),
            time.monotonic(),
        )
        assert stored == 3
        assert store.query("SELECT count() AS n FROM otel_logs").rows == [{"n": 3}]


@pytest.mark.parametrize(
    "ids",
    [
        [bytes(range(1, 17)), bytes(range(17, 33))],  # uniform: one hexlify
        [b"\x01" + bytes(15), bytes(15) + b"\x02"],  # zeros across two ids: the slow path
        [bytes(range(1, 17)), bytes(16), b""],  # all-zero and missing ids are empty
        [bytes(range(1, 17)), b"\x01\x02\x03", b"\xff" * 40],  # odd lengths
    ],
)
def test_id_columns_hold_hex_id_of_every_id(ids: list[bytes]) -> None:
    """TraceId and SpanId, whichever way the column is built, hold values.hex_id's text."""
    from hyperdx.local.values import hex_id

    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                scope_logs=[
                    ScopeLogs(
                        log_records=[
                            record(index, trace_id=raw, span_id=raw[:8])
                            for index, raw in enumerate(ids)
                        ]
                    )
                ]
            )
        ]
    )
    block = log_tables(RawAttributesRequest.FromString(request.SerializeToString()))
    payload = block[rows.LOGS_TABLE].payload
    for name, width in (("TraceId", None), ("SpanId", 8)):
        expected = b"".join(native.string(hex_id(raw[:width])) for raw in ids)
        header = native.string(name) + native.string("String")
        start = payload.index(header) + len(header)
        assert payload[start : start + len(expected)] == expected


@pytest.mark.parametrize("body", ["short", "long " * 40])
def test_a_body_that_is_not_utf8_is_a_400_with_nothing_stored(tmp_path: Path, body: str) -> None:
    """Bodies are read from the wire as bytes (a short string body is copied as is): bad
    UTF-8 in one must still be the 400 the full decode gives, not stored bytes."""
    from hyperdx.local import wire
    from hyperdx.local.admission import Admission
    from hyperdx.local.store import ChdbSink

    good = record(1, body=av(body + "!"))
    request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record(0), good])])]
    )
    data = request.SerializeToString()
    bad = data.replace(body.encode() + b"!", body.encode() + b"\xff", 1)
    assert bad != data
    logs = wire.SIGNALS["/v1/logs"]
    with pytest.raises(wire.WireError, match="failed to decode protobuf body"):
        wire.decode(bad, wire.PROTOBUF, logs.request_type)
    with Store.open(tmp_path) as store:
        sink = ChdbSink(store)
        kind = wire.request_type(logs, sink, wire.PROTOBUF)
        with pytest.raises(wire.WireError, match="failed to decode protobuf body") as raised:
            wire.ingest(
                Admission(),
                sink,
                logs,
                lambda: wire.decode(bad, wire.PROTOBUF, kind),
                wire.SinkErrors(),
                time.monotonic(),
            )
        assert raised.value.status == 400
        assert store.query("SELECT count() AS n FROM otel_logs").rows == [{"n": 0}]
