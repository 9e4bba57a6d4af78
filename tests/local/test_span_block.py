"""Spans mapped straight to a Native block store the same rows as the JSONEachRow dict path.

Each request is stored twice in real chDB, once as the dict rows of ``trace_rows``
(JSONEachRow, the reference) and once as the block of ``trace_tables``, and every column of
every row must be equal, for inputs covering every value type and edge. otel_traces sorts
its rows by (ServiceName, SpanName, second), so the rows are compared as sorted lists of
whole rows; TTL merges are stopped so that rows of 1970, 2000 and 2262 stay to be compared.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from test_log_block import SCALARS, kvs  # every attribute value type; KeyValues of them

from hyperdx.local import native, rows, wire
from hyperdx.local.span_block import SPAN_COLUMNS, RawSpansRequest, trace_tables
from hyperdx.local.store import ChdbSink, Store, StoreError

NOW = time.time_ns()
TRACE = bytes(range(1, 17))
SPAN = bytes(range(1, 9))


# Around the raw fast path's limits: a 125-byte string is its last one-byte-length value.
BOUNDARIES: dict[str, Any] = {
    "at.125": "a" * 125,
    "at.126": "b" * 126,
    "at.127": "c" * 127,
    "k" * 127: "longest one-byte key",
    "k" * 128: "two-byte key",
    "ü" * 62: "é" * 62,  # multi-byte characters, one-byte lengths
}


def span(index: int, **fields: Any) -> Span:
    base: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": index.to_bytes(8, "big") if index else SPAN,
        "parent_span_id": SPAN,
        "name": f"op-{index % 3}",
        "kind": Span.SPAN_KIND_SERVER,
        "start_time_unix_nano": NOW + index,
        "end_time_unix_nano": NOW + index + 1_000_000,
        "attributes": kvs({"http.route": "/items/{id}", "row": index}),
    }
    base.update(fields)
    return Span(**base)


def event(nanos: int, name: str, attributes: dict[str, Any] | None = None) -> Span.Event:
    return Span.Event(time_unix_nano=nanos, name=name, attributes=kvs(attributes or {}))


def link(trace_id: bytes, span_id: bytes, state: str = "", **attributes: Any) -> Span.Link:
    return Span.Link(
        trace_id=trace_id, span_id=span_id, trace_state=state, attributes=kvs(attributes)
    )


def varied_request() -> ExportTraceServiceRequest:
    """Every value type and edge, across three resources and five scopes."""
    spans_a = [
        span(1, attributes=kvs(SCALARS)),
        span(2, attributes=kvs([("dup", "first"), ("dup", "last"), ("x", 1)])),
        span(3, attributes=kvs({"nested": {"a": [1, {"b": 2.5}]}, "arr": [1, "two", None]})),
        span(4, attributes=kvs(BOUNDARIES)),
        span(5, attributes=[]),
        span(6, attributes=kvs({"big": "y" * 100_000}), name="n" * 100_000),
        *(span(10 + kind, kind=kind) for kind in range(6)),
        span(16, kind=9),  # not a SpanKind: ""
        span(20, status=Status(code=Status.STATUS_CODE_UNSET)),
        span(21, status=Status(code=Status.STATUS_CODE_OK, message="fine")),
        span(22, status=Status(code=Status.STATUS_CODE_ERROR, message="boom " * 30_000)),
        span(23, status=Status(code=7, message="unknown code")),  # not a StatusCode: ""
        span(30, trace_id=b"", span_id=b"", parent_span_id=b""),
        span(31, trace_id=bytes(16), span_id=bytes(8), parent_span_id=bytes(8)),
        span(32, trace_id=b"\x01\x02\x03", span_id=b"\xff" * 40, parent_span_id=b"\x00\x01"),
        span(33, trace_state="vendor=a,other=b", name=""),
        span(40, start_time_unix_nano=0, end_time_unix_nano=0),
        span(41, start_time_unix_nano=946_684_800_123_456_789),  # 2000: pre-"<sec>.<ns>"
        span(42, start_time_unix_nano=10**18, end_time_unix_nano=10**18 - 5),  # ends early
        span(43, start_time_unix_nano=2**64 - 1, end_time_unix_nano=2**64 - 1),  # clamped
        span(44, start_time_unix_nano=0, end_time_unix_nano=2**64 - 1),  # longest duration
        span(
            50,
            events=[
                event(NOW, "exception", {"exception.message": "bad", "exception.escaped": True}),
                event(0, ""),
                event(946_684_800_000_000_001, "y2k", {"nested": [1, 2], "dup": 1}),
                event(2**64 - 1, "far future", {"bytes": b"\x00\xff"}),
                event(NOW + 1, "big", {"stack": "s" * 100_000}),
            ],
        ),
        span(
            51,
            links=[
                link(TRACE, SPAN, "congo=t61rcWkgMzE", kind="follows", n=2),
                link(b"", b""),
                link(bytes(16), bytes(8), "a=b"),
                link(b"\xab" * 3, b"\xcd" * 9, map={"k": "v"}),
            ],
            events=[event(NOW, "with link")],
        ),
        span(52, links=[link(TRACE, SPAN)]),  # links without events
        # repeated attribute sets and pairs map as they did the first time
        span(60, attributes=kvs([("dup", "first"), ("dup", "last"), ("x", 1)])),
        span(61, attributes=kvs(SCALARS)),
    ]
    scope_a = ScopeSpans(
        scope=InstrumentationScope(name="app", version="1.2", attributes=kvs({"scope.k": 1})),
        schema_url="https://opentelemetry.io/schemas/1.26.0",
        spans=spans_a,
    )
    scope_b = ScopeSpans(scope=InstrumentationScope(name="other"), spans=[span(70)])
    scope_empty = ScopeSpans(scope=InstrumentationScope(name="empty"))
    resource_a = ResourceSpans(
        resource=Resource(
            attributes=kvs(
                {
                    "service.name": "svc-a",
                    "rum.sessionId": "session-1",
                    "host.cpus": 2,
                    "nested": {"k": [1, 2]},
                }
            )
        ),
        schema_url="https://example.com/resource",
        scope_spans=[scope_a, scope_empty, scope_b],
    )
    resource_b = ResourceSpans(  # no service.name, no resource attributes
        scope_spans=[ScopeSpans(spans=[span(80), span(81, name="Ünïcode")])]
    )
    resource_c = ResourceSpans(  # a non-string service.name, a scope without spans only
        resource=Resource(attributes=kvs({"service.name": 7})),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name="s", version="v"))],
    )
    resource_d = ResourceSpans(
        resource=Resource(attributes=kvs({"service.name": "svc-d"})),
        scope_spans=[ScopeSpans(spans=[span(90, attributes=kvs({"SampleRate": "10"}))])],
    )
    return ExportTraceServiceRequest(
        resource_spans=[resource_a, resource_b, resource_c, resource_d]
    )


def sdk_like_request(count: int, seed: int) -> ExportTraceServiceRequest:
    """What an instrumented app sends: a root span per 8, scalar attributes, one of them
    distinct per span (so attribute sets never repeat)."""
    spans = [
        span(
            index + 1,
            trace_id=(seed * 1000 + index // 8 + 1).to_bytes(16, "big"),
            parent_span_id=b"" if index % 8 == 0 else SPAN,
            kind=Span.SPAN_KIND_SERVER if index % 8 == 0 else Span.SPAN_KIND_CLIENT,
            name="GET /items/{id}",
            attributes=kvs(
                {
                    "http.request.method": "GET",
                    "http.response.status_code": [200, 404][index % 2],
                    "url.path": f"/items/{(index * seed) % 997}",
                }
            ),
        )
        for index in range(count)
    ]
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=kvs({"service.name": f"svc-{seed}"})),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name="flask"), spans=spans)],
            )
        ]
    )


def with_one_repeated_key(count: int) -> ExportTraceServiceRequest:
    """An SDK-like request where one span repeats a key: that span is mapped by the rows'
    rule while the others take the pass over the whole request."""
    request = sdk_like_request(count, 3)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[count // 2].attributes.extend(kvs({"url.path": "/last/wins"}))
    return request


def stored_then_emptied(store: Store) -> list[dict[str, Any]]:
    """otel_traces' rows (every column, materialized ones too, maps also as their entries)
    sorted as whole rows; then the table is emptied for the next insert."""
    result = store.query(
        "SELECT *, `__hdx_materialized_rum.sessionId` AS rum, SampleRate, "
        # Map entries as stored, in order (a JSON object would hide a repeated key)
        "CAST(ResourceAttributes, 'Array(Tuple(String, String))') AS resource_entries, "
        "CAST(SpanAttributes, 'Array(Tuple(String, String))') AS span_entries, "
        "arrayMap(m -> mapKeys(m), `Events.Attributes`) AS event_keys, "
        "arrayMap(m -> mapKeys(m), `Links.Attributes`) AS link_keys "
        "FROM otel_traces"
    )
    store.query("TRUNCATE TABLE otel_traces")
    return sorted(result.rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))


@pytest.mark.parametrize(
    "make",
    [varied_request, lambda: sdk_like_request(600, 7), lambda: with_one_repeated_key(64)],
    ids=["varied", "sdk-like", "one-repeated-key"],
)
def test_a_block_stores_exactly_the_rows_of_the_dict_mapping(tmp_path: Path, make: Any) -> None:
    request = make()
    reference = rows.trace_rows(request)
    block = trace_tables(RawSpansRequest.FromString(request.SerializeToString()))[rows.TRACES_TABLE]
    assert isinstance(block, native.Block)
    assert block.count == len(reference) > 0
    with Store.open(tmp_path) as store:
        store.query("SYSTEM STOP TTL MERGES default.otel_traces")
        store.insert(rows.TRACES_TABLE, reference)
        old = stored_then_emptied(store)
        store.insert_block(rows.TRACES_TABLE, block)
        new = stored_then_emptied(store)
    assert len(new) == len(old) == len(reference)
    for index, (old_row, new_row) in enumerate(zip(old, new, strict=True)):
        assert new_row == old_row, f"row {index} differs"


def test_varied_request_reaches_the_edges_it_names() -> None:
    """The comparison above is only as good as its input: check the input covers them."""
    spans = rows.trace_rows(varied_request())
    assert {row["SpanKind"] for row in spans} == {
        "Unspecified", "Internal", "Server", "Client", "Producer", "Consumer", ""
    }  # fmt: skip
    assert {row["StatusCode"] for row in spans} == {"Unset", "Ok", "Error", ""}
    attributes = [row["SpanAttributes"] for row in spans]
    assert attributes.count({"dup": "last", "x": "1"}) == 2  # a repeated key, twice
    assert any(row.get("nested") == '{"a":[1,{"b":2.5}]}' for row in attributes)
    assert {"[1,2]", "AP8=", "true", "bad"} <= {
        value for row in spans for values in row["Events.Attributes"] for value in values.values()
    }
    assert {row["Timestamp"][:4] for row in spans} >= {"1970", "2000", "1000", "9223"}
    assert {row["Duration"] for row in spans} >= {0, 2**64 - 1, 1_000_000}
    assert {row["TraceId"] for row in spans} >= {"", "010203"}
    linked = next(row for row in spans if len(row["Links.TraceId"]) == 4)
    assert linked["Links.TraceId"] == [TRACE.hex(), "", "", "ababab"]
    assert linked["Links.TraceState"][0] == "congo=t61rcWkgMzE"
    assert {row["ServiceName"] for row in spans} == {"svc-a", "", "svc-d"}
    assert max(len(row["SpanName"]) for row in spans) == 100_000


def test_block_timestamps_are_the_nanoseconds_chdb_reads_from_the_json_text(
    tmp_path: Path,
) -> None:
    """Every Timestamp of the block (read from its first column) equals what chDB parses
    from the dict path's DateTime64 text: pre-2001 dates, zero, the clamped far future."""
    request = varied_request()
    texts = [row["Timestamp"] for row in rows.trace_rows(request)]
    block = trace_tables(request)[rows.TRACES_TABLE]
    header = native.varint(len(SPAN_COLUMNS)) + native.varint(block.count)
    header += native.string("Timestamp") + native.string("DateTime64(9)")
    assert block.payload.startswith(header)
    column = block.payload[len(header) : len(header) + 8 * block.count]
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


def test_a_request_without_spans_gives_no_block() -> None:
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans()]), ResourceSpans()]
    )
    assert trace_tables(request) == {rows.TRACES_TABLE: []}
    assert trace_tables(ExportTraceServiceRequest()) == {rows.TRACES_TABLE: []}


def test_raw_spans_request_reads_the_same_bytes_with_attributes_as_raw_pairs() -> None:
    request = varied_request()
    data = request.SerializeToString()
    raw = RawSpansRequest.FromString(data)
    assert raw.SerializeToString() == data  # the same wire format, nothing lost
    first = raw.resource_spans[0].scope_spans[0].spans[0]
    assert [KeyValue.FromString(item) for item in first.attributes] == list(
        request.resource_spans[0].scope_spans[0].spans[0].attributes
    )
    # an ExportTraceServiceRequest (as OTLP/JSON decodes) maps to the same block
    assert trace_tables(raw) == trace_tables(request)


def test_receivers_decode_traces_for_blocks_only_for_a_block_sink_and_protobuf() -> None:
    from hyperdx.local.sinks import MemorySink

    traces = wire.SIGNALS["/v1/traces"]
    block_sink = ChdbSink(store=None)  # type: ignore[arg-type]  # never written to here
    assert wire.request_type(traces, block_sink, wire.PROTOBUF) is RawSpansRequest
    assert wire.request_type(traces, block_sink, wire.JSON) is ExportTraceServiceRequest
    assert wire.request_type(traces, MemorySink(), wire.PROTOBUF) is ExportTraceServiceRequest


def test_store_refuses_a_block_with_other_columns(tmp_path: Path) -> None:
    block = trace_tables(sdk_like_request(3, 1))[rows.TRACES_TABLE]
    with Store.open(tmp_path) as store:
        with pytest.raises(StoreError, match="otel_logs"):
            store.insert_block("otel_logs", block)
        wrong = native.Block(SPAN_COLUMNS[:-1], block.payload, block.count)
        with pytest.raises(StoreError, match="otel_traces"):
            store.insert_block("otel_traces", wrong)
        assert store.query("SELECT count() AS n FROM otel_traces").rows == [{"n": 0}]


def _ingest(store: Store, body: bytes) -> int:
    from hyperdx.local.admission import Admission

    traces = wire.SIGNALS["/v1/traces"]
    sink = ChdbSink(store)
    kind = wire.request_type(traces, sink, wire.PROTOBUF)
    return wire.ingest(
        Admission(),
        sink,
        traces,
        lambda: wire.decode(body, wire.PROTOBUF, kind),
        wire.SinkErrors(),
        time.monotonic(),
    )


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        (b"\x0a\x0ahttp.route", b"\x0a\x0ahttp.rout\xff"),  # a key, on the raw fast path
        (b"/items/{id}", b"/items/{i\xc3"),  # a string value, on the raw fast path
        (b"\x0a\x03row", b"\x0a\x03ro\xfe"),  # a key of an int value: parsed by protobuf
    ],
)
def test_a_malformed_attribute_is_a_400_with_nothing_stored(
    tmp_path: Path, good: bytes, bad: bytes
) -> None:
    """Span attributes are decoded as raw bytes and parsed only while mapping: a KeyValue
    the full decode refuses (bad UTF-8) must still be a 400, not stored bytes or a 500."""
    data = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span(1)])])]
    ).SerializeToString()
    broken = data.replace(good, bad, 1)
    assert broken != data
    with pytest.raises(wire.WireError, match="failed to decode protobuf body"):
        wire.decode(broken, wire.PROTOBUF, ExportTraceServiceRequest)
    with Store.open(tmp_path) as store:
        with pytest.raises(wire.WireError, match="failed to decode protobuf body") as raised:
            _ingest(store, broken)
        assert raised.value.status == 400
        assert store.query("SELECT count() AS n FROM otel_traces").rows == [{"n": 0}]
        assert _ingest(store, data) == 1  # the well-formed request, the same route
        stored = store.query("SELECT SpanAttributes AS a FROM otel_traces").rows
    assert stored == [{"a": {"http.route": "/items/{id}", "row": "1"}}]
