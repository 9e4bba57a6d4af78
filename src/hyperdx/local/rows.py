"""OTLP requests -> rows for ClickStack's ClickHouse tables (pure functions).

The rows are what ClickStack's collector (contrib ``clickhouse`` exporter in Map mode, after
HyperDX's log ``transform`` processor) would store, column for column, so the same SQL works
against ``hyperdx local`` and a real ClickStack (REFERENCE.md sections 1.6, 2 and 3).

Each row is a dict ready for ``INSERT ... FORMAT JSONEachRow``: DateTime64(9) values are
``"<sec>.<ns:09d>"`` strings (integers overflow, floats lose nanoseconds), metric ``DateTime``
values are whole seconds, Map columns are ``dict[str, str]``. MATERIALIZED, ALIAS and DEFAULT
columns are left out: ClickHouse computes them.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Exemplar, Metric
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

__all__ = [
    "LOGS_TABLE",
    "METRIC_TABLES",
    "SESSIONS_TABLE",
    "TRACES_TABLE",
    "any_value_to_python",
    "format_double",
    "log_rows",
    "log_rows_by_table",
    "metric_rows",
    "stringify",
    "trace_rows",
]

TRACES_TABLE = "otel_traces"
LOGS_TABLE = "otel_logs"
SESSIONS_TABLE = "hyperdx_sessions"
GAUGE_TABLE = "otel_metrics_gauge"
SUM_TABLE = "otel_metrics_sum"
HISTOGRAM_TABLE = "otel_metrics_histogram"
EXP_HISTOGRAM_TABLE = "otel_metrics_exponential_histogram"
SUMMARY_TABLE = "otel_metrics_summary"
METRIC_TABLES = (GAUGE_TABLE, SUM_TABLE, HISTOGRAM_TABLE, EXP_HISTOGRAM_TABLE, SUMMARY_TABLE)

# A log record carrying this attribute (any value) is browser session replay: ClickStack's
# routing connector sends it to hyperdx_sessions, untransformed.
RRWEB_ATTRIBUTE = "rr-web.event"

_SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS_CODES = ("Unset", "Ok", "Error")

# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


class _Unencodable(ValueError):
    """A NaN/Inf inside an array or map: Go's JSON encoder refuses it, the value becomes ""."""


def format_double(value: float) -> str:
    """Format a double like Go's pcommon ``AsString`` (ES6 number-to-string rules).

    Fixed notation unless ``abs < 1e-6`` or ``abs >= 1e21``; shortest round-trip digits;
    ``1`` not ``1.0``; exponent as ``e+21`` / ``e-7``.
    """
    text = repr(value)
    if "e" not in text and "n" not in text:  # repr is fixed-point for 1e-4 <= |v| < 1e16
        return text[:-2] if text.endswith(".0") else text
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    magnitude = abs(value)
    if magnitude == 0 or 1e-6 <= magnitude < 1e21:
        text = format(Decimal(repr(value)), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    significant = "".join(map(str, digits)).rstrip("0") or "0"
    sci_exponent = exponent + len(digits) - 1
    mantissa = significant[0] + ("." + significant[1:] if len(significant) > 1 else "")
    exp_sign = "-" if sci_exponent < 0 else "+"
    exp_digits = str(abs(sci_exponent))
    if exp_sign == "+" and len(exp_digits) < 2:
        exp_digits = exp_digits.zfill(2)
    return f"{'-' if sign else ''}{mantissa}e{exp_sign}{exp_digits}"


def any_value_to_python(value: AnyValue) -> Any:
    """AnyValue -> plain Python (str, bool, int, float, bytes, list, dict, None)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value_to_python(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value_to_python(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _json_text(value: Any) -> str:
    """Compact JSON like Go's encoding/json without HTML escaping: sorted keys, ES6 numbers."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise _Unencodable("NaN or Infinity inside an array or map")
        return format_double(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, bytes):
        return '"' + base64.b64encode(value).decode("ascii") + '"'
    if isinstance(value, list):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(_json_string(k) + ":" + _json_text(v) for k, v in items) + "}"
    raise TypeError(f"value of type {type(value).__name__} is not an OTLP value")


def _json_string(text: str) -> str:
    # Go escapes U+2028/U+2029 even with HTML escaping off; Python's encoder does not.
    return (
        json.dumps(text, ensure_ascii=False)
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def stringify(value: Any) -> str:
    """One OTLP value (as plain Python) -> the string stored in a Map(String, String) column."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    try:
        return _json_text(value)
    except _Unencodable:
        return ""


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """KeyValue list -> ordered dict of plain values (a repeated key: the last one wins)."""
    return {kv.key: any_value_to_python(kv.value) for kv in pairs}


def _string_map(values: Mapping[str, Any]) -> dict[str, str]:
    return {key: stringify(value) for key, value in values.items()}


def _attribute_map(pairs: Iterable[KeyValue]) -> dict[str, str]:
    """KeyValue list -> Map(String, String) value; the hot path of every row."""
    out: dict[str, str] = {}
    for pair in pairs:
        value = pair.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            out[pair.key] = value.string_value
        elif kind == "int_value":
            out[pair.key] = str(value.int_value)
        elif kind is None:
            out[pair.key] = ""
        else:
            out[pair.key] = stringify(any_value_to_python(value))
    return out


def _hex_id(raw: bytes) -> str:
    """Span/trace id -> lowercase hex; empty or all-zero -> "" (ClickStack stores no zeros)."""
    if not raw or not any(raw):
        return ""
    return raw.hex()


def _exemplar_id(raw: bytes, size: int) -> str:
    """Exemplar ids are plain hex of a fixed-size array: missing stays all zeros."""
    return raw.hex() if len(raw) == size else "0" * (2 * size)


# ClickHouse reads "<sec>.<ns>" as a unix time only when <sec> is long enough (shorter ones
# are tried as dates and fail), and DateTime64(9) ends at 2**63-1 ns (year 2262).
_UNIX_TEXT_FROM_NS = 1_000_000_000 * 1_000_000_000
_MAX_DATETIME64_NS = 2**63 - 1


def _datetime64(nanos: int) -> str:
    """Nanoseconds since the epoch -> exact DateTime64(9) JSON text.

    ``"<sec>.<ns:09d>"`` from 2001-09-09 on; earlier instants (a zero timestamp) as
    ``"YYYY-MM-DD hh:mm:ss.<ns>"`` UTC, which ClickHouse parses for any date; values past
    DateTime64(9)'s range are clamped to its end instead of failing the whole insert.
    """
    seconds, fraction = divmod(min(nanos, _MAX_DATETIME64_NS), 1_000_000_000)
    if nanos >= _UNIX_TEXT_FROM_NS:
        return f"{seconds}.{fraction:09d}"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}"


def _service_name(resource: Resource) -> str:
    name = ""
    for kv in resource.attributes:
        if kv.key == "service.name":
            name = stringify(any_value_to_python(kv.value))
    return name


# --------------------------------------------------------------------------------------------
# Traces
# --------------------------------------------------------------------------------------------


def trace_rows(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """Rows for ``otel_traces``: one per span."""
    rows: list[dict[str, Any]] = []
    for resource_spans in request.resource_spans:
        resource = resource_spans.resource
        service = _service_name(resource)
        resource_attrs = _attribute_map(resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            for span in scope_spans.spans:
                events = list(span.events)
                links = list(span.links)
                rows.append(
                    {
                        "Timestamp": _datetime64(span.start_time_unix_nano),
                        "TraceId": _hex_id(span.trace_id),
                        "SpanId": _hex_id(span.span_id),
                        "ParentSpanId": _hex_id(span.parent_span_id),
                        "TraceState": span.trace_state,
                        "SpanName": span.name,
                        "SpanKind": _enum_name(_SPAN_KINDS, span.kind),
                        "ServiceName": service,
                        "ResourceAttributes": dict(resource_attrs),
                        "ScopeName": scope.name,
                        "ScopeVersion": scope.version,
                        "SpanAttributes": _attribute_map(span.attributes),
                        # A span ending before it starts would underflow UInt64: store 0.
                        "Duration": max(0, span.end_time_unix_nano - span.start_time_unix_nano),
                        "StatusCode": _enum_name(_STATUS_CODES, span.status.code),
                        "StatusMessage": span.status.message,
                        "Events.Timestamp": [_datetime64(e.time_unix_nano) for e in events],
                        "Events.Name": [e.name for e in events],
                        "Events.Attributes": [_attribute_map(e.attributes) for e in events],
                        "Links.TraceId": [_hex_id(link.trace_id) for link in links],
                        "Links.SpanId": [_hex_id(link.span_id) for link in links],
                        "Links.TraceState": [link.trace_state for link in links],
                        "Links.Attributes": [_attribute_map(link.attributes) for link in links],
                    }
                )
    return rows


def _enum_name(names: tuple[str, ...], number: int) -> str:
    """Enum number -> ClickStack's name; unknown numbers -> "" (as pdata's String())."""
    return names[number] if 0 <= number < len(names) else ""


# --------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------


def log_rows_by_table(request: ExportLogsServiceRequest) -> dict[str, list[dict[str, Any]]]:
    """Rows for ``otel_logs`` (log transform applied) and ``hyperdx_sessions`` (untouched).

    Both keys are always present, possibly with empty lists.
    """
    tables: dict[str, list[dict[str, Any]]] = {LOGS_TABLE: [], SESSIONS_TABLE: []}
    for resource_logs in request.resource_logs:
        resource = resource_logs.resource
        service = _service_name(resource)
        resource_attrs = _attribute_map(resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope_attrs = _attribute_map(scope.attributes)
            for record in scope_logs.log_records:
                attributes = _attributes(record.attributes)
                common: dict[str, Any] = {
                    "Timestamp": _datetime64(
                        record.time_unix_nano or record.observed_time_unix_nano
                    ),
                    "TraceId": _hex_id(record.trace_id),
                    "SpanId": _hex_id(record.span_id),
                    "TraceFlags": record.flags & 0xFF,
                    "ServiceName": service,
                    "Body": stringify(any_value_to_python(record.body)),
                    "ResourceSchemaUrl": resource_logs.schema_url,
                    "ResourceAttributes": dict(resource_attrs),
                    "ScopeSchemaUrl": scope_logs.schema_url,
                    "ScopeName": scope.name,
                    "ScopeVersion": scope.version,
                    "ScopeAttributes": dict(scope_attrs),
                }
                if RRWEB_ATTRIBUTE in attributes:
                    common["SeverityText"] = record.severity_text
                    common["SeverityNumber"] = record.severity_number & 0xFF
                    common["LogAttributes"] = _string_map(attributes)
                    tables[SESSIONS_TABLE].append(common)
                    continue
                text, number, attributes = transform_log(record, attributes)
                common["SeverityText"] = text
                common["SeverityNumber"] = number & 0xFF
                common["LogAttributes"] = _string_map(attributes)
                common["EventName"] = record.event_name
                tables[LOGS_TABLE].append(common)
    return tables


def log_rows(request: ExportLogsServiceRequest) -> list[dict[str, Any]]:
    """Rows for ``otel_logs`` only; session-replay records are left out (see
    :func:`log_rows_by_table`)."""
    return log_rows_by_table(request)[LOGS_TABLE]


_JSON_SPAN = re.compile(r"\{.*\}")  # greedy, first "{" to last "}" on that line, like RE2 "."
_LEVEL_KEYS = ("level", "Level", "LEVEL", "severity", "Severity", "SEVERITY", "log.level")
# (substring or keyword group, severity number); order matters, see _promoted_number.
_PROMOTION_RULES = (
    (("alert", "crit", "emerg", "fatal"), 21),
    (("error", "err"), 17),
    (("warn", "notice"), 13),
    (("info",), 9),
    (("debug", "dbug"), 5),
    (("trace",), 1),
)
_INFER_KEYWORD = re.compile(
    r"\b(alert|crit|emerg|fatal|error|err|warn|notice|debug|dbug|trace)", re.IGNORECASE | re.ASCII
)
_INFERRED = {
    "alert": ("fatal", 21),
    "crit": ("fatal", 21),
    "emerg": ("fatal", 21),
    "fatal": ("fatal", 21),
    "error": ("error", 17),
    "err": ("error", 17),
    "warn": ("warn", 13),
    "notice": ("warn", 13),
    "debug": ("debug", 5),
    "dbug": ("debug", 5),
    "trace": ("trace", 1),
}


def transform_log(record: LogRecord, attributes: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """HyperDX's collector log transform (REFERENCE.md section 1.6), statement by statement.

    Returns (severity text, severity number, attributes as plain values). Every step ignores
    its own errors, as the processor runs with ``error_mode: ignore``.
    """
    body = any_value_to_python(record.body)
    attributes = dict(attributes)
    # 1. JSON object somewhere in a string body -> upserted into the attributes.
    if isinstance(body, str):
        match = _JSON_SPAN.search(body)
        if match is not None:
            parsed = _parse_json_object(match.group(0))
            if parsed is not None:
                attributes.update(parsed)
    # 2. Flatten nested maps and arrays (always: the guard tests the cache, always a map).
    attributes = _flatten(attributes)
    # 3. A map body's top-level entries are upserted after flattening (nested stay nested).
    if isinstance(body, dict):
        attributes.update(body)
    text = record.severity_text
    number: int = record.severity_number
    if number == 0 and text == "":
        promoted = _promoted_level(attributes)
        if promoted is not None:
            text, number = promoted, _promoted_number(promoted)
        else:
            text, number = _inferred_level(stringify(body))
    return text.lower(), number, attributes


def _parse_json_object(text: str) -> dict[str, Any] | None:
    """OTTL ParseJSON: an object or nothing; every JSON number becomes a double."""
    try:
        parsed = json.loads(text, parse_int=float, parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    if "\\u" in text:  # escaped lone surrogates: Go decodes them as U+FFFD, so must we
        parsed = _replace_lone_surrogates(parsed)
    return parsed


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _flatten(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """OTTL flatten(): nested keys joined with ".", array items as ``name.<index>``."""
    result: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                visit(f"{prefix}.{key}", inner)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                visit(f"{prefix}.{index}", inner)
        else:
            result[prefix] = value

    for key, value in attributes.items():
        visit(key, value)
    return result


def _promoted_level(attributes: Mapping[str, Any]) -> str | None:
    for key in _LEVEL_KEYS:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _promoted_number(text: str) -> int:
    """Substring tests in order; a later match overrides an earlier one; none -> info (9)."""
    lowered = text.lower()
    number = 0
    for needles, candidate in _PROMOTION_RULES:
        if any(needle in lowered for needle in needles):
            number = candidate
    return number or 9


def _inferred_level(body: str) -> tuple[str, int]:
    match = _INFER_KEYWORD.search(body[:256])
    if match is None:
        return "info", 9
    return _INFERRED[match.group(1).lower()]


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def metric_rows(request: ExportMetricsServiceRequest) -> dict[str, list[dict[str, Any]]]:
    """Rows for the five ``otel_metrics_*`` tables: one per data point.

    Every table name is a key, possibly with an empty list.
    """
    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in METRIC_TABLES}
    for resource_metrics in request.resource_metrics:
        resource = resource_metrics.resource
        service = _service_name(resource)
        resource_attrs = _attribute_map(resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            head = {
                "ResourceAttributes": resource_attrs,
                "ResourceSchemaUrl": resource_metrics.schema_url,
                "ScopeName": scope.name,
                "ScopeVersion": scope.version,
                "ScopeAttributes": _attribute_map(scope.attributes),
                "ScopeDroppedAttrCount": scope.dropped_attributes_count,
                "ScopeSchemaUrl": scope_metrics.schema_url,
                "ServiceName": service,
            }
            for metric in scope_metrics.metrics:
                _metric_points(head, metric, tables)
    return tables


def _metric_points(
    head: Mapping[str, Any],
    metric: Metric,
    tables: dict[str, list[dict[str, Any]]],
) -> None:
    kind = metric.WhichOneof("data")

    def base(point: Any) -> dict[str, Any]:
        row = {
            key: (dict(value) if isinstance(value, dict) else value) for key, value in head.items()
        }
        row.update(
            {
                "MetricName": metric.name,
                "MetricDescription": metric.description,
                "MetricUnit": metric.unit,
                "Attributes": _attribute_map(point.attributes),
                "StartTimeUnix": point.start_time_unix_nano // 1_000_000_000,
                "TimeUnix": point.time_unix_nano // 1_000_000_000,
            }
        )
        return row

    if kind == "gauge" or kind == "sum":
        data = metric.gauge if kind == "gauge" else metric.sum
        for point in data.data_points:
            row = base(point)
            row["Value"] = _number(point)
            row["Flags"] = point.flags
            row.update(_exemplars(point.exemplars))
            if kind == "sum":
                row["AggregationTemporality"] = int(metric.sum.aggregation_temporality)
                row["IsMonotonic"] = bool(metric.sum.is_monotonic)
                tables[SUM_TABLE].append(row)
            else:
                tables[GAUGE_TABLE].append(row)
    elif kind == "histogram":
        for hpoint in metric.histogram.data_points:
            row = base(hpoint)
            row["Count"] = hpoint.count
            row["Sum"] = hpoint.sum
            row["BucketCounts"] = list(hpoint.bucket_counts)
            row["ExplicitBounds"] = list(hpoint.explicit_bounds)
            row.update(_exemplars(hpoint.exemplars))
            row["Flags"] = hpoint.flags
            row["Min"] = hpoint.min
            row["Max"] = hpoint.max
            row["AggregationTemporality"] = int(metric.histogram.aggregation_temporality)
            tables[HISTOGRAM_TABLE].append(row)
    elif kind == "exponential_histogram":
        for epoint in metric.exponential_histogram.data_points:
            row = base(epoint)
            row["Count"] = epoint.count
            row["Sum"] = epoint.sum
            row["Scale"] = epoint.scale
            row["ZeroCount"] = epoint.zero_count
            row["PositiveOffset"] = epoint.positive.offset
            row["PositiveBucketCounts"] = list(epoint.positive.bucket_counts)
            row["NegativeOffset"] = epoint.negative.offset
            row["NegativeBucketCounts"] = list(epoint.negative.bucket_counts)
            row.update(_exemplars(epoint.exemplars))
            row["Flags"] = epoint.flags
            row["Min"] = epoint.min
            row["Max"] = epoint.max
            row["AggregationTemporality"] = int(
                metric.exponential_histogram.aggregation_temporality
            )
            tables[EXP_HISTOGRAM_TABLE].append(row)
    elif kind == "summary":
        for spoint in metric.summary.data_points:
            row = base(spoint)
            row["Count"] = spoint.count
            row["Sum"] = spoint.sum
            row["ValueAtQuantiles.Quantile"] = [q.quantile for q in spoint.quantile_values]
            row["ValueAtQuantiles.Value"] = [q.value for q in spoint.quantile_values]
            row["Flags"] = spoint.flags
            tables[SUMMARY_TABLE].append(row)
    # A metric without data (kind None) has no data points: nothing to store.


def _number(point: Any) -> float:
    """NumberDataPoint / Exemplar value as Float64; no value -> 0."""
    which = point.WhichOneof("value")
    if which == "as_double":
        return float(point.as_double)
    if which == "as_int":
        return float(point.as_int)
    return 0.0


def _exemplars(exemplars: Iterable[Exemplar]) -> dict[str, list[Any]]:
    items = list(exemplars)
    return {
        "Exemplars.FilteredAttributes": [_attribute_map(e.filtered_attributes) for e in items],
        "Exemplars.TimeUnix": [e.time_unix_nano // 1_000_000_000 for e in items],
        "Exemplars.Value": [_number(e) for e in items],
        "Exemplars.SpanId": [_exemplar_id(e.span_id, 8) for e in items],
        "Exemplars.TraceId": [_exemplar_id(e.trace_id, 16) for e in items],
    }
