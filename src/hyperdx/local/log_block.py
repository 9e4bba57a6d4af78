"""OTLP logs -> one Native block for ``otel_logs``: the receiver's hot path for logs.

The same rows as :func:`hyperdx.local.rows.log_rows_by_table` (tested column for column
against it through real chDB), built as columns instead of one dict per record:

- the seven columns set by the resource and scope (``ServiceName``, ``ResourceAttributes``,
  ``ScopeName``...) are encoded once per scope and repeated, not once per record;
- attribute keys and values, severity texts and empty strings are encoded once per request
  (they repeat across its records) and looked up by their text;
- ``Timestamp`` is the integer nanoseconds, not ``"<sec>.<ns>"`` text for chDB to parse;
- log records' attributes are read as raw ``KeyValue`` bytes (:data:`RawAttributesRequest`,
  :mod:`hyperdx.local.raw_attributes`)
  and mapped once per distinct pair: upb builds a Python object per ``KeyValue`` and per
  ``AnyValue`` read (~2.7 us of a record's ~7 us for four attributes), a bytes item costs
  a quarter of that, and pairs repeat across records;
- the body is read as raw ``AnyValue`` bytes too: a short string body's bytes after its tag
  are already a Native ``String`` (the same LEB128 length prefix), so it is copied as is
  (UTF-8 checked once per column, as upb checks it at decode);
- trace and span ids of the usual lengths become their column in one ``hexlify``.

Records the log transform changes (and session-replay records, which go to
``hyperdx_sessions`` as row dicts) take the dict path's own code, so the rules live in one
place (:mod:`hyperdx.local.rows`).
"""

from __future__ import annotations

from array import array
from typing import Any

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from hyperdx.local.native import (
    EMPTY,
    MAX_NS,
    Block,
    Run,
    block,
    id_column,
    little_endian,
    map_entries,
    repeated_maps,
    repeated_strings,
    string,
)
from hyperdx.local.raw_attributes import (
    MISSING,
    Pairs,
    attribute_columns,
    encoded_entries,
    raw_request,
)
from hyperdx.local.rows import LOGS_TABLE, RRWEB_ATTRIBUTE, SESSIONS_TABLE, transformed_log
from hyperdx.local.values import attribute_map, service_name, stringify

__all__ = ["LOG_COLUMNS", "RawAttributesRequest", "log_tables"]

#: The request type the receiver parses OTLP/protobuf logs into for :func:`log_tables`.
#: ExportLogsServiceRequest with ``LogRecord.attributes`` declared ``repeated bytes`` and
#: ``LogRecord.body`` ``optional bytes`` (keeps a set but empty body on the wire).
RawAttributesRequest = raw_request(
    logs_pb2, ExportLogsServiceRequest, {"LogRecord": ("attributes", "body")}, ("body",)
)

#: otel_logs' inserted columns in block order, with the type each is sent as.
LOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Timestamp", "DateTime64(9)"),
    ("TraceId", "String"),
    ("SpanId", "String"),
    ("TraceFlags", "UInt8"),
    ("ServiceName", "String"),
    ("Body", "String"),
    ("ResourceSchemaUrl", "String"),
    ("ResourceAttributes", "Map(String, String)"),
    ("ScopeSchemaUrl", "String"),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("ScopeAttributes", "Map(String, String)"),
    ("SeverityText", "String"),
    ("SeverityNumber", "UInt8"),
    ("LogAttributes", "Map(String, String)"),
    ("EventName", "String"),
)

# Scope constants, in Run.strings order: ServiceName, ResourceSchemaUrl, ScopeSchemaUrl,
# ScopeName, ScopeVersion; in Run.maps order: ResourceAttributes, ScopeAttributes.
_SERVICE, _RESOURCE_SCHEMA, _SCOPE_SCHEMA, _SCOPE_NAME, _SCOPE_VERSION = range(5)
_RESOURCE_ATTRIBUTES, _SCOPE_ATTRIBUTES = range(2)


_RRWEB_KEY = string(RRWEB_ATTRIBUTE)


def _attribute_columns(
    raw_attributes: tuple[bytes, ...], pairs: Pairs, known: dict[str, bytes]
) -> tuple[tuple[bytes, ...], tuple[bytes, ...]] | None:
    """A record's raw attributes -> (encoded keys, encoded values) of its LogAttributes, or
    None if the log transform must map the record (a nested value, a repeated key: the last
    wins there; or a session-replay record)."""
    columns = attribute_columns(raw_attributes, pairs, known)
    if columns is None or _RRWEB_KEY in columns[0]:
        return None
    return columns


_STRING_VALUE = 0x0A  # AnyValue.string_value's tag: field 1, length-delimited


def _checked_strings(values: list[bytes]) -> bytes:
    """A String column of encoded ``values``, raising DecodeError (the request's 400) if one
    is not UTF-8: bodies are taken from the wire as bytes, so this is upb's check for them."""
    column = b"".join(values)
    try:
        column.decode("utf-8")  # length prefixes under 128 are ASCII: usually one pass
    except UnicodeDecodeError:
        for value in values:  # longer prefixes, or a bad value: check each one
            start = 1
            while value[start - 1] & 0x80:
                start += 1
            try:
                value[start:].decode("utf-8")
            except UnicodeDecodeError as error:
                raise DecodeError(f"a log body is not valid UTF-8: {error}") from None
    return column


def log_tables(request: Message) -> dict[str, Any]:
    """``{"otel_logs": Block (or [] if no row), "hyperdx_sessions": [row dicts]}`` of a
    :data:`RawAttributesRequest` (or of an ExportLogsServiceRequest, converted first)."""
    if not isinstance(request, RawAttributesRequest):
        request = RawAttributesRequest.FromString(request.SerializeToString())
    sessions: list[dict[str, Any]] = []
    scopes: list[Run] = []
    timestamps = array("q")
    trace_ids: list[bytes] = []  # raw ids: id_column encodes them
    span_ids: list[bytes] = []
    # Row index -> encoded TraceId and SpanId, for the rows the log transform mapped.
    mapped_trace_ids: dict[int, bytes] = {}
    mapped_span_ids: dict[int, bytes] = {}
    flags = bytearray()
    bodies: list[bytes] = []
    severity_texts: list[bytes] = []
    severity_numbers = bytearray()
    ends = array("Q")  # LogAttributes' cumulative entry counts
    keys: list[bytes] = []
    values: list[bytes] = []
    event_names: list[bytes] = []
    # Encoded strings that repeat across records: attribute keys and values, severities.
    known: dict[str, bytes] = {"": EMPTY}
    pairs: Pairs = {}
    # A record's raw attributes -> _attribute_columns: records from one call site repeat
    # the same attributes, and a tuple of the raw pairs costs less to read than iterating
    # the repeated field (~1.2 us against ~3.2 us for four attributes).
    attribute_sets: dict[tuple[bytes, ...], tuple[tuple[bytes, ...], tuple[bytes, ...]] | None]
    attribute_sets = {}
    entries = 0
    for resource_logs in request.resource_logs:
        resource = resource_logs.resource
        service = service_name(resource)
        resource_attrs = attribute_map(resource.attributes)
        resource_schema_url = resource_logs.schema_url
        resource_parts = map_entries(resource_attrs)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope_attrs = attribute_map(scope.attributes)
            scope_schema_url = scope_logs.schema_url
            scope_name = scope.name
            scope_version = scope.version
            constants = Run(
                (
                    string(service),
                    string(resource_schema_url),
                    string(scope_schema_url),
                    string(scope_name),
                    string(scope_version),
                ),
                (resource_parts, map_entries(scope_attrs)),
            )
            scopes.append(constants)
            kept = 0
            for record in scope_logs.log_records:
                severity_text = record.severity_text
                severity_number = record.severity_number
                # rows.plain_log's test, with the attributes encoded as they are read
                plain = bool(severity_number or severity_text)
                encoded_body = None
                if plain:
                    raw_body = record.body
                    size = len(raw_body) - 2
                    if 0 < size < 128 and raw_body[1] == size and raw_body[0] == _STRING_VALUE:
                        # a short string body alone: its wire bytes after the tag are
                        # already a Native String (LEB128 length, then the UTF-8 bytes;
                        # checked once for the whole column, as upb would at decode)
                        plain = raw_body.find(b"{", 2) < 0
                        encoded_body = raw_body[1:]
                    else:
                        body_value = AnyValue.FromString(raw_body)
                        body = body_value.string_value
                        if body:
                            plain = "{" not in body
                        else:
                            kind = body_value.WhichOneof("value")
                            if kind == "array_value" or kind == "kvlist_value":
                                plain = False
                            elif kind is not None:
                                body = stringify(getattr(body_value, kind))
                columns = None
                if plain:
                    raw_attributes = tuple(record.attributes)
                    columns = attribute_sets.get(raw_attributes, MISSING)
                    if columns is MISSING:
                        columns = attribute_sets[raw_attributes] = _attribute_columns(
                            raw_attributes, pairs, known
                        )
                if columns is not None:
                    keys += columns[0]
                    values += columns[1]
                    entries += len(columns[0])
                    trace_ids.append(record.trace_id)
                    span_ids.append(record.span_id)
                    text = severity_text.lower()
                    number = severity_number & 0xFF
                    event_name = record.event_name
                else:
                    table, row = transformed_log(
                        LogRecord.FromString(record.SerializeToString()),
                        severity_text,
                        severity_number,
                        service,
                        resource_schema_url,
                        resource_attrs,
                        scope_schema_url,
                        scope_name,
                        scope_version,
                        scope_attrs,
                    )
                    if table == SESSIONS_TABLE:
                        sessions.append(row)
                        continue
                    body = row["Body"]
                    encoded_body = None
                    index = len(timestamps)
                    mapped_trace_ids[index] = string(row["TraceId"]) if row["TraceId"] else EMPTY
                    mapped_span_ids[index] = string(row["SpanId"]) if row["SpanId"] else EMPTY
                    trace_ids.append(b"")
                    span_ids.append(b"")
                    text = row["SeverityText"]
                    number = row["SeverityNumber"]
                    event_name = row["EventName"]
                    mapped_keys, mapped_values = encoded_entries(row["LogAttributes"], known)
                    keys += mapped_keys
                    values += mapped_values
                    entries += len(mapped_keys)
                nanos = record.time_unix_nano or record.observed_time_unix_nano
                timestamps.append(nanos if nanos <= MAX_NS else MAX_NS)
                flags.append(record.flags & 0xFF)
                if encoded_body is None:
                    encoded_body = string(body) if body else EMPTY
                bodies.append(encoded_body)
                encoded = known.get(text)
                if encoded is None:
                    encoded = known[text] = string(text)
                severity_texts.append(encoded)
                severity_numbers.append(number)
                ends.append(entries)
                event_names.append(string(event_name) if event_name else EMPTY)
                kept += 1
            constants.count = kept
    count = len(timestamps)
    tables: dict[str, Any] = {LOGS_TABLE: [], SESSIONS_TABLE: sessions}
    if count:
        kept_scopes = [scope for scope in scopes if scope.count]
        data = {
            "Timestamp": little_endian(timestamps),
            "TraceId": id_column(trace_ids, mapped_trace_ids, 16),
            "SpanId": id_column(span_ids, mapped_span_ids, 8),
            "TraceFlags": bytes(flags),
            "ServiceName": repeated_strings(kept_scopes, _SERVICE),
            "Body": _checked_strings(bodies),
            "ResourceSchemaUrl": repeated_strings(kept_scopes, _RESOURCE_SCHEMA),
            "ResourceAttributes": repeated_maps(kept_scopes, _RESOURCE_ATTRIBUTES),
            "ScopeSchemaUrl": repeated_strings(kept_scopes, _SCOPE_SCHEMA),
            "ScopeName": repeated_strings(kept_scopes, _SCOPE_NAME),
            "ScopeVersion": repeated_strings(kept_scopes, _SCOPE_VERSION),
            "ScopeAttributes": repeated_maps(kept_scopes, _SCOPE_ATTRIBUTES),
            "SeverityText": b"".join(severity_texts),
            "SeverityNumber": bytes(severity_numbers),
            "LogAttributes": little_endian(ends) + b"".join(keys) + b"".join(values),
            "EventName": b"".join(event_names),
        }
        columns = [(name, kind, data[name]) for name, kind in LOG_COLUMNS]
        tables[LOGS_TABLE] = Block(LOG_COLUMNS, block(columns, count), count)
    return tables
