"""OTLP logs -> one Native block for ``otel_logs``: the receiver's hot path for logs.

The same rows as :func:`hyperdx.local.rows.log_rows_by_table` (tested column for column
against it through real chDB), built as columns instead of one dict per record:

- the seven columns set by the resource and scope (``ServiceName``, ``ResourceAttributes``,
  ``ScopeName``...) are encoded once per scope and repeated, not once per record;
- attribute keys and values, severity texts and empty strings are encoded once per request
  (they repeat across its records) and looked up by their text;
- ``Timestamp`` is the integer nanoseconds, not ``"<sec>.<ns>"`` text for chDB to parse;
- log records' attributes are read as raw ``KeyValue`` bytes (:data:`RawAttributesRequest`)
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
from binascii import hexlify
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1 import resource_pb2

from hyperdx.local.native import Block, block, encoded_string, little_endian, string
from hyperdx.local.rows import LOGS_TABLE, RRWEB_ATTRIBUTE, SESSIONS_TABLE, transformed_log
from hyperdx.local.values import attribute_map, other_text, service_name, stringify

__all__ = ["LOG_COLUMNS", "RawAttributesRequest", "log_tables"]


def _raw_attributes_request() -> type[Message]:
    """ExportLogsServiceRequest with ``LogRecord.attributes`` declared ``repeated bytes``
    and ``LogRecord.body`` ``optional bytes``.

    The same wire format (a KeyValue or AnyValue is a length-delimited field either way),
    so it parses the same request bytes and serialises back to them; built from the installed
    opentelemetry-proto descriptors, in a private pool, so it follows their version.
    """
    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2):
        dependency = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(dependency)
        pool.Add(dependency)
    package = "hyperdx.local.raw_attributes"
    logs = descriptor_pb2.FileDescriptorProto()
    logs_pb2.DESCRIPTOR.CopyToProto(logs)
    logs.name = "hyperdx/local/raw_attributes.proto"
    logs.package = package
    logs.ClearField("options")
    logs.dependency[:] = [common_pb2.DESCRIPTOR.name, resource_pb2.DESCRIPTOR.name]
    kept = [m for m in logs.message_type if m.name in ("ResourceLogs", "ScopeLogs", "LogRecord")]
    del logs.message_type[:]
    del logs.enum_type[:]  # SeverityNumber read as its number
    field_type = descriptor_pb2.FieldDescriptorProto
    for message in kept:
        for field in message.field:
            if message.name == "LogRecord" and field.name in ("attributes", "body"):
                field.type = field_type.TYPE_BYTES
                field.ClearField("type_name")
                if field.name == "body":  # keeps a set but empty body on the wire
                    field.proto3_optional = True
                    field.oneof_index = len(message.oneof_decl)
                    message.oneof_decl.add(name="_body")
            elif field.type == field_type.TYPE_ENUM:
                field.type = field_type.TYPE_INT32
                field.ClearField("type_name")
            elif field.type_name.startswith(f".{logs_pb2.DESCRIPTOR.package}."):
                field.type_name = f".{package}.{field.type_name.rsplit('.', 1)[1]}"
    logs.message_type.extend(kept)
    request = logs.message_type.add(name="ExportLogsServiceRequest")
    request.field.add(
        name="resource_logs",
        number=ExportLogsServiceRequest.DESCRIPTOR.fields_by_name["resource_logs"].number,
        label=field_type.LABEL_REPEATED,
        type=field_type.TYPE_MESSAGE,
        type_name=f".{package}.ResourceLogs",
    )
    pool.Add(logs)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{package}.ExportLogsServiceRequest")
    )


#: The request type the receiver parses OTLP/protobuf logs into for :func:`log_tables`.
RawAttributesRequest = _raw_attributes_request()

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

# DateTime64(9) ends at 2**63-1 ns; values.datetime64 clamps later instants to it.
_MAX_NS = 2**63 - 1
_EMPTY = b"\x00"  # an empty String


class _Scope:
    """One scope's constant columns, encoded once, and how many of its rows were kept."""

    __slots__ = ("attributes", "count", "resource", "strings")

    def __init__(
        self,
        strings: tuple[bytes, bytes, bytes, bytes, bytes],
        resource: tuple[int, bytes, bytes],
        attributes: tuple[int, bytes, bytes],
    ) -> None:
        self.strings = strings  # ServiceName, ResourceSchemaUrl, ScopeSchemaUrl, Name, Version
        self.resource = resource  # (entries, keys, values) of ResourceAttributes
        self.attributes = attributes  # the same for ScopeAttributes
        self.count = 0


_MISSING: Any = object()


def _pair(raw: bytes, known: dict[str, bytes]) -> tuple[str, bytes, bytes] | None:
    """A raw KeyValue's (key, encoded key, encoded value) as attribute_map maps it; None
    for an array or map value."""
    pair = KeyValue.FromString(raw)
    key = pair.key
    value = pair.value
    item = value.string_value
    if not item:
        number = value.int_value
        if number:
            item = str(number)
        else:
            other = other_text(value)
            if other is None:
                return None
            item = other
    encoded_key = known.get(key)
    if encoded_key is None:
        encoded_key = known[key] = string(key)
    encoded = known.get(item)
    if encoded is None:
        encoded = known[item] = string(item)
    return key, encoded_key, encoded


def _attribute_columns(
    raw_attributes: tuple[bytes, ...],
    pairs: dict[bytes, tuple[str, bytes, bytes] | None],
    known: dict[str, bytes],
) -> tuple[tuple[bytes, ...], tuple[bytes, ...]] | None:
    """A record's raw attributes -> (encoded keys, encoded values) of its LogAttributes, or
    None if the log transform must map the record (a nested value, a repeated key: the last
    wins there; or a session-replay record)."""
    names: list[str] = []
    keys: list[bytes] = []
    values: list[bytes] = []
    for raw in raw_attributes:
        pair = pairs.get(raw, _MISSING)
        if pair is _MISSING:
            pair = pairs[raw] = _pair(raw, known)
        if pair is None:
            return None
        names.append(pair[0])
        keys.append(pair[1])
        values.append(pair[2])
    if RRWEB_ATTRIBUTE in names or (len(names) > 1 and len(set(names)) != len(names)):
        return None
    return tuple(keys), tuple(values)


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


def _id_value(raw: bytes) -> bytes:
    """A trace or span id as its String value: :func:`~hyperdx.local.values.hex_id`'s text
    (empty for a missing or all-zero id), encoded without the intermediate str."""
    return encoded_string(hexlify(raw)) if any(raw) else _EMPTY


def _id_column(raws: list[bytes], mapped: dict[int, bytes], width: int) -> bytes:
    """The TraceId or SpanId column: :func:`_id_value` of each raw id, or for the rows
    the log transform mapped (``mapped``: row index -> encoded value) their row's value.

    When every id is ``width`` bytes and none is all zeros (what SDKs send), the column is
    one ``hexlify`` of all the ids with the length byte of a ``2 * width``-character
    String as its separator: ~0.1 us an id instead of ~0.5."""
    joined = b"".join(raws)
    if (
        not mapped
        and len(joined) == width * len(raws)
        and len(set(map(len, raws))) <= 1
        and bytes(width) not in joined  # also when zeros span two ids: the slow path then
    ):
        length = bytes((2 * width,))
        return length + hexlify(joined, length, width) if joined else b""
    return b"".join(
        mapped[index] if index in mapped else _id_value(raw) for index, raw in enumerate(raws)
    )


def _map_parts(mapping: dict[str, str]) -> tuple[int, bytes, bytes]:
    return (
        len(mapping),
        b"".join(map(string, mapping)),
        b"".join(map(string, mapping.values())),
    )


def log_tables(request: Message) -> dict[str, Any]:
    """``{"otel_logs": Block (or [] if no row), "hyperdx_sessions": [row dicts]}`` of a
    :data:`RawAttributesRequest` (or of an ExportLogsServiceRequest, converted first)."""
    if not isinstance(request, RawAttributesRequest):
        request = RawAttributesRequest.FromString(request.SerializeToString())
    sessions: list[dict[str, Any]] = []
    scopes: list[_Scope] = []
    timestamps = array("q")
    trace_ids: list[bytes] = []  # raw ids: _id_column encodes them
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
    known: dict[str, bytes] = {"": _EMPTY}
    # Raw KeyValue -> (key, encoded key, encoded value), or None if its value is nested.
    pairs: dict[bytes, tuple[str, bytes, bytes] | None] = {}
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
        resource_parts = _map_parts(resource_attrs)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope_attrs = attribute_map(scope.attributes)
            scope_schema_url = scope_logs.schema_url
            scope_name = scope.name
            scope_version = scope.version
            constants = _Scope(
                (
                    string(service),
                    string(resource_schema_url),
                    string(scope_schema_url),
                    string(scope_name),
                    string(scope_version),
                ),
                resource_parts,
                _map_parts(scope_attrs),
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
                    columns = attribute_sets.get(raw_attributes, _MISSING)
                    if columns is _MISSING:
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
                    mapped_trace_ids[index] = string(row["TraceId"]) if row["TraceId"] else _EMPTY
                    mapped_span_ids[index] = string(row["SpanId"]) if row["SpanId"] else _EMPTY
                    trace_ids.append(b"")
                    span_ids.append(b"")
                    text = row["SeverityText"]
                    number = row["SeverityNumber"]
                    event_name = row["EventName"]
                    attributes: dict[str, str] = row["LogAttributes"]
                    for key, item in attributes.items():
                        encoded = known.get(key)
                        if encoded is None:
                            encoded = known[key] = string(key)
                        keys.append(encoded)
                        encoded = known.get(item)
                        if encoded is None:
                            encoded = known[item] = string(item)
                        values.append(encoded)
                    entries += len(attributes)
                nanos = record.time_unix_nano or record.observed_time_unix_nano
                timestamps.append(nanos if nanos <= _MAX_NS else _MAX_NS)
                flags.append(record.flags & 0xFF)
                if encoded_body is None:
                    encoded_body = string(body) if body else _EMPTY
                bodies.append(encoded_body)
                encoded = known.get(text)
                if encoded is None:
                    encoded = known[text] = string(text)
                severity_texts.append(encoded)
                severity_numbers.append(number)
                ends.append(entries)
                event_names.append(string(event_name) if event_name else _EMPTY)
                kept += 1
            constants.count = kept
    count = len(timestamps)
    tables: dict[str, Any] = {LOGS_TABLE: [], SESSIONS_TABLE: sessions}
    if count:
        data = _columns(
            scopes,
            little_endian(timestamps),
            _id_column(trace_ids, mapped_trace_ids, 16),
            _id_column(span_ids, mapped_span_ids, 8),
            bytes(flags),
            _checked_strings(bodies),
            b"".join(severity_texts),
            bytes(severity_numbers),
            little_endian(ends) + b"".join(keys) + b"".join(values),
            b"".join(event_names),
        )
        columns = [(name, kind, data[name]) for name, kind in LOG_COLUMNS]
        tables[LOGS_TABLE] = Block(LOG_COLUMNS, block(columns, count), count)
    return tables


def _columns(
    scopes: list[_Scope],
    timestamps: bytes,
    trace_ids: bytes,
    span_ids: bytes,
    flags: bytes,
    bodies: bytes,
    severity_texts: bytes,
    severity_numbers: bytes,
    log_attributes: bytes,
    event_names: bytes,
) -> dict[str, bytes]:
    """Every column's data, the scope constants repeated over their scope's rows."""
    kept = [scope for scope in scopes if scope.count]
    constant = [
        b"".join(scope.strings[index] * scope.count for scope in kept) for index in range(5)
    ]
    return {
        "Timestamp": timestamps,
        "TraceId": trace_ids,
        "SpanId": span_ids,
        "TraceFlags": flags,
        "ServiceName": constant[0],
        "Body": bodies,
        "ResourceSchemaUrl": constant[1],
        "ResourceAttributes": _repeated_maps([(s.resource, s.count) for s in kept]),
        "ScopeSchemaUrl": constant[2],
        "ScopeName": constant[3],
        "ScopeVersion": constant[4],
        "ScopeAttributes": _repeated_maps([(s.attributes, s.count) for s in kept]),
        "SeverityText": severity_texts,
        "SeverityNumber": severity_numbers,
        "LogAttributes": log_attributes,
        "EventName": event_names,
    }


def _repeated_maps(runs: list[tuple[tuple[int, bytes, bytes], int]]) -> bytes:
    """A Map column holding each run's map on its run's rows."""
    ends = array("Q")
    end = 0
    for (entries, _, _), rows in runs:
        if entries:
            ends.extend(range(end + entries, end + entries * rows + 1, entries))
            end += entries * rows
        else:
            ends.extend([end] * rows)
    keys = b"".join(keys * rows for (_, keys, _), rows in runs)
    values = b"".join(values * rows for (_, _, values), rows in runs)
    return little_endian(ends) + keys + values
