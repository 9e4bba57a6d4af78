"""OTLP logs -> one Native block for ``otel_logs``: the receiver's hot path for logs.

The same rows as :func:`hyperdx.local.rows.log_rows_by_table` (tested column for column
against it through real chDB), built as columns instead of one dict per record:

- the seven columns set by the resource and scope (``ServiceName``, ``ResourceAttributes``,
  ``ScopeName``...) are encoded once per scope and repeated, not once per record;
- attribute keys and values, severity texts and empty strings are encoded once per request
  (they repeat across its records) and looked up by their text;
- ``Timestamp`` is the integer nanoseconds, not ``"<sec>.<ns>"`` text for chDB to parse.

Records the log transform changes (and session-replay records, which go to
``hyperdx_sessions`` as row dicts) take the dict path's own code, so the rules live in one
place (:mod:`hyperdx.local.rows`).
"""

from __future__ import annotations

from array import array
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from hyperdx.local.native import Block, block, little_endian, string
from hyperdx.local.rows import LOGS_TABLE, SESSIONS_TABLE, plain_log, transformed_log
from hyperdx.local.values import attribute_map, hex_id, service_name

__all__ = ["LOG_COLUMNS", "log_tables"]

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


def _map_parts(mapping: dict[str, str]) -> tuple[int, bytes, bytes]:
    return (
        len(mapping),
        b"".join(map(string, mapping)),
        b"".join(map(string, mapping.values())),
    )


def log_tables(request: ExportLogsServiceRequest) -> dict[str, Any]:
    """``{"otel_logs": Block (or [] if no row), "hyperdx_sessions": [row dicts]}``."""
    sessions: list[dict[str, Any]] = []
    scopes: list[_Scope] = []
    timestamps = array("q")
    trace_ids: list[bytes] = []
    span_ids: list[bytes] = []
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
                plain = plain_log(record, severity_text, severity_number)
                if plain is not None:
                    body, attributes = plain
                    trace_id = hex_id(record.trace_id)
                    span_id = hex_id(record.span_id)
                    text = severity_text.lower()
                    number = severity_number & 0xFF
                    event_name = record.event_name
                else:
                    table, row = transformed_log(
                        record,
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
                    attributes = row["LogAttributes"]
                    trace_id = row["TraceId"]
                    span_id = row["SpanId"]
                    text = row["SeverityText"]
                    number = row["SeverityNumber"]
                    event_name = row["EventName"]
                nanos = record.time_unix_nano or record.observed_time_unix_nano
                timestamps.append(nanos if nanos <= _MAX_NS else _MAX_NS)
                trace_ids.append(string(trace_id) if trace_id else _EMPTY)
                span_ids.append(string(span_id) if span_id else _EMPTY)
                flags.append(record.flags & 0xFF)
                bodies.append(string(body))
                encoded = known.get(text)
                if encoded is None:
                    encoded = known[text] = string(text)
                severity_texts.append(encoded)
                severity_numbers.append(number)
                for key, value in attributes.items():
                    encoded = known.get(key)
                    if encoded is None:
                        encoded = known[key] = string(key)
                    keys.append(encoded)
                    encoded = known.get(value)
                    if encoded is None:
                        encoded = known[value] = string(value)
                    values.append(encoded)
                entries += len(attributes)
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
            b"".join(trace_ids),
            b"".join(span_ids),
            bytes(flags),
            b"".join(bodies),
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
