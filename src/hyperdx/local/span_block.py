"""OTLP traces -> one Native block for ``otel_traces``: the receiver's hot path for spans.

The same rows as :func:`hyperdx.local.rows.trace_rows` (tested column for column against
it through real chDB), built as columns instead of one dict per span. Under load the dict
path spent ~2/3 of the receiver's GIL time building the row dicts (half of it in
``attribute_map``) and ~1/4 encoding them as JSON (py-spy, 2026-11-30); here:

- the columns set by the resource and scope (``ServiceName``, ``ResourceAttributes``,
  ``ScopeName``, ``ScopeVersion``) are encoded once per scope and repeated;
- span attributes are read as raw ``KeyValue`` bytes (:data:`RawSpansRequest`) and mapped
  once per distinct pair (:mod:`hyperdx.local.raw_attributes`), span names and attribute
  keys and values encoded once per request;
- ``Timestamp`` and ``Duration`` are integers, ids become their column in one ``hexlify``;
- events and links (rare) are mapped per item with the dict path's own functions.

Attribute lists :func:`~hyperdx.local.values.attribute_map` maps by its rarer rules (a
nested value, a repeated key) are mapped by it, so the rules live in one place.
"""

from __future__ import annotations

from array import array
from operator import sub
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from hyperdx.local.native import (
    EMPTY,
    MAX_NS,
    Block,
    Run,
    block,
    id_column,
    id_value,
    little_endian,
    map_entries,
    repeated_maps,
    repeated_strings,
    string,
)
from hyperdx.local.raw_attributes import (
    Pairs,
    attribute_columns,
    encoded_entries,
    map_column,
    raw_request,
)
from hyperdx.local.rows import SPAN_KINDS, STATUS_CODES, TRACES_TABLE
from hyperdx.local.values import attribute_map, service_name

__all__ = ["SPAN_COLUMNS", "RawSpansRequest", "trace_tables"]

#: ExportTraceServiceRequest with ``Span.attributes`` declared ``repeated bytes``: the
#: request type the receiver parses OTLP/protobuf traces into for :func:`trace_tables`.
RawSpansRequest = raw_request(trace_pb2, ExportTraceServiceRequest, {"Span": ("attributes",)})

#: otel_traces' inserted columns in block order, with the type each is sent as.
SPAN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Timestamp", "DateTime64(9)"),
    ("TraceId", "String"),
    ("SpanId", "String"),
    ("ParentSpanId", "String"),
    ("TraceState", "String"),
    ("SpanName", "String"),
    ("SpanKind", "String"),
    ("ServiceName", "String"),
    ("ResourceAttributes", "Map(String, String)"),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("SpanAttributes", "Map(String, String)"),
    ("Duration", "UInt64"),
    ("StatusCode", "String"),
    ("StatusMessage", "String"),
    ("Events.Timestamp", "Array(DateTime64(9))"),
    ("Events.Name", "Array(String)"),
    ("Events.Attributes", "Array(Map(String, String))"),
    ("Links.TraceId", "Array(String)"),
    ("Links.SpanId", "Array(String)"),
    ("Links.TraceState", "Array(String)"),
    ("Links.Attributes", "Array(Map(String, String))"),
)

# Run.strings order: ServiceName, ScopeName, ScopeVersion; Run.maps: ResourceAttributes.
_SERVICE, _SCOPE_NAME, _SCOPE_VERSION = range(3)
_RESOURCE_ATTRIBUTES = 0


def _span_attributes(
    raws: list[bytes], ends: array[int], pairs: Pairs, known: dict[str, bytes]
) -> bytes:
    """The SpanAttributes column of the spans' raw attributes (``raws``, span ``i``'s
    ending at ``ends[i]``): in passes over the whole request, or, if a span has a nested
    value or a repeated key, span by span with attribute_map for such spans."""
    column = map_column(raws, ends, pairs, known)
    if column is not None:
        return column
    keys: list[bytes] = []
    values: list[bytes] = []
    entries = array("Q")  # a repeated key makes one entry: not the raw ends
    start = 0
    for end in ends:
        raw = tuple(raws[start:end])
        start = end
        columns = attribute_columns(raw, pairs, known)
        if columns is None:
            columns = encoded_entries(attribute_map(map(KeyValue.FromString, raw)), known)
        keys += columns[0]
        values += columns[1]
        entries.append(len(keys))
    return little_endian(entries) + b"".join(keys) + b"".join(values)


class _Nested:
    """One ``Array(...)`` group's (Events' or Links') per-row ends and its Map column."""

    __slots__ = ("count", "ends", "entries", "keys", "map_ends", "values")

    def __init__(self) -> None:
        self.count = 0
        self.ends = array("Q")  # the rows' cumulative item counts
        self.entries = 0
        self.map_ends = array("Q")  # the items' cumulative attribute counts
        self.keys: list[bytes] = []
        self.values: list[bytes] = []

    def add_map(self, mapping: dict[str, str]) -> None:
        entries, keys, values = map_entries(mapping)
        self.entries += entries
        self.map_ends.append(self.entries)
        self.keys.append(keys)
        self.values.append(values)

    def maps(self) -> bytes:
        """The ``Array(Map(String, String))`` column's nested Map column."""
        return little_endian(self.map_ends) + b"".join(self.keys) + b"".join(self.values)


def _strings(texts: list[str], known: dict[str, bytes]) -> bytes:
    """A String column of ``texts``, each distinct text encoded once (``known``)."""
    for text in dict.fromkeys(texts):
        if text not in known:
            known[text] = string(text)
    return b"".join(map(known.__getitem__, texts))


def _names(numbers: list[int], names: dict[int, str]) -> bytes:
    """A String column of enum ``numbers`` by ``names`` (another number: "", as the rows)."""
    encoded = {number: string(names.get(number, "")) for number in set(numbers)}
    return b"".join(map(encoded.__getitem__, numbers))


def _durations(starts: array[int], ends: array[int]) -> array[int]:
    """``end - start`` of each span, or 0 for one ending before it starts (as the rows:
    a negative duration would underflow UInt64)."""
    try:
        return array("Q", map(sub, ends, starts))
    except OverflowError:
        return array(
            "Q",
            [end - start if end > start else 0 for start, end in zip(starts, ends, strict=True)],
        )


def _clamped(nanos: array[int]) -> array[int]:
    """DateTime64(9) nanoseconds, clamped to its end as values.datetime64 clamps them."""
    if nanos and max(nanos) > MAX_NS:
        return array("Q", [min(value, MAX_NS) for value in nanos])
    return nanos


def trace_tables(request: Message) -> dict[str, Any]:
    """``{"otel_traces": Block (or [] if no span)}`` of a :data:`RawSpansRequest` (or of
    an ExportTraceServiceRequest, converted first)."""
    if not isinstance(request, RawSpansRequest):
        request = RawSpansRequest.FromString(request.SerializeToString())
    runs: list[Run] = []
    # Per span, in turn; the columns are built from them after the loop, in C-level passes.
    starts = array("Q")
    finishes = array("Q")
    trace_ids: list[bytes] = []  # raw ids: id_column encodes them
    span_ids: list[bytes] = []
    parent_ids: list[bytes] = []
    trace_states: list[str] = []
    names: list[str] = []
    kinds: list[int] = []
    codes: list[int] = []
    messages: list[str] = []
    raw_attributes: list[bytes] = []  # every span's raw KeyValues, in turn
    ends = array("Q")  # the spans' cumulative counts of them
    events = _Nested()
    event_times = array("Q")
    event_names: list[str] = []
    links = _Nested()
    link_trace_ids: list[bytes] = []
    link_span_ids: list[bytes] = []
    link_states: list[str] = []
    for resource_spans in request.resource_spans:
        resource = resource_spans.resource
        service = string(service_name(resource))
        resource_entries = map_entries(attribute_map(resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            spans = scope_spans.spans
            run = Run((service, string(scope.name), string(scope.version)), (resource_entries,))
            run.count = len(spans)
            runs.append(run)
            for span in spans:
                starts.append(span.start_time_unix_nano)
                finishes.append(span.end_time_unix_nano)
                trace_ids.append(span.trace_id)
                span_ids.append(span.span_id)
                parent_ids.append(span.parent_span_id)
                trace_states.append(span.trace_state)
                names.append(span.name)
                kinds.append(span.kind)
                status = span.status
                codes.append(status.code)
                messages.append(status.message)
                raw_attributes += span.attributes[:]  # [:]: ~half the cost of tuple()
                ends.append(len(raw_attributes))
                span_events = span.events
                if span_events:
                    for event in span_events:
                        event_times.append(event.time_unix_nano)
                        event_names.append(event.name)
                        events.add_map(attribute_map(event.attributes))
                    events.count += len(span_events)
                events.ends.append(events.count)
                span_links = span.links
                if span_links:
                    for link in span_links:
                        link_trace_ids.append(id_value(link.trace_id))
                        link_span_ids.append(id_value(link.span_id))
                        link_states.append(link.trace_state)
                        links.add_map(attribute_map(link.attributes))
                    links.count += len(span_links)
                links.ends.append(links.count)
    count = len(starts)
    if not count:
        return {TRACES_TABLE: []}
    # Encoded strings that repeat across spans: names, attribute keys and values.
    known: dict[str, bytes] = {"": EMPTY}
    runs = [run for run in runs if run.count]
    event_ends = little_endian(events.ends)
    link_ends = little_endian(links.ends)
    data = {
        "Timestamp": little_endian(_clamped(starts)),
        "TraceId": id_column(trace_ids, {}, 16),
        "SpanId": id_column(span_ids, {}, 8),
        "ParentSpanId": id_column(parent_ids, {}, 8),
        "TraceState": _strings(trace_states, known),
        "SpanName": _strings(names, known),
        "SpanKind": _names(kinds, SPAN_KINDS),
        "ServiceName": repeated_strings(runs, _SERVICE),
        "ResourceAttributes": repeated_maps(runs, _RESOURCE_ATTRIBUTES),
        "ScopeName": repeated_strings(runs, _SCOPE_NAME),
        "ScopeVersion": repeated_strings(runs, _SCOPE_VERSION),
        "SpanAttributes": _span_attributes(raw_attributes, ends, {}, known),
        "Duration": little_endian(_durations(starts, finishes)),
        "StatusCode": _names(codes, STATUS_CODES),
        "StatusMessage": _strings(messages, known),
        "Events.Timestamp": event_ends + little_endian(_clamped(event_times)),
        "Events.Name": event_ends + _strings(event_names, known),
        "Events.Attributes": event_ends + events.maps(),
        "Links.TraceId": link_ends + b"".join(link_trace_ids),
        "Links.SpanId": link_ends + b"".join(link_span_ids),
        "Links.TraceState": link_ends + _strings(link_states, known),
        "Links.Attributes": link_ends + links.maps(),
    }
    encoded_columns = [(column, sent_as, data[column]) for column, sent_as in SPAN_COLUMNS]
    return {TRACES_TABLE: Block(SPAN_COLUMNS, block(encoded_columns, count), count)}
