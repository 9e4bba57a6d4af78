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

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Exemplar, Metric

from hyperdx.local.logtransform import transform_log
from hyperdx.local.values import (
    NestedValue,
    any_value_to_python,
    attribute_map,
    attributes_of,
    datetime64,
    exemplar_id,
    format_double,
    hex_id,
    service_name,
    string_map,
    stringify,
)

__all__ = [
    "LOGS_TABLE",
    "METRIC_TABLES",
    "SESSIONS_TABLE",
    "SPAN_KINDS",
    "STATUS_CODES",
    "TRACES_TABLE",
    "any_value_to_python",
    "format_double",
    "log_rows",
    "log_rows_by_table",
    "plain_log",
    "metric_rows",
    "stringify",
    "trace_rows",
    "transform_log",
    "transformed_log",
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

#: Enum number -> ClickStack's name; an unknown number -> "" (as pdata's String()).
SPAN_KINDS = dict(
    enumerate(("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"))
)
STATUS_CODES = dict(enumerate(("Unset", "Ok", "Error")))

# --------------------------------------------------------------------------------------------
# Traces
# --------------------------------------------------------------------------------------------


def trace_rows(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """Rows for ``otel_traces``: one per span."""
    rows: list[dict[str, Any]] = []
    for resource_spans in request.resource_spans:
        resource = resource_spans.resource
        service = service_name(resource)
        resource_attrs = attribute_map(resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            scope_name = scope.name
            scope_version = scope.version
            # Rows of one scope share its (never mutated) resource map.
            for span in scope_spans.spans:
                start = span.start_time_unix_nano
                end = span.end_time_unix_nano
                status = span.status
                row: dict[str, Any] = {
                    "Timestamp": datetime64(start),
                    "TraceId": hex_id(span.trace_id),
                    "SpanId": hex_id(span.span_id),
                    "ParentSpanId": hex_id(span.parent_span_id),
                    "TraceState": span.trace_state,
                    "SpanName": span.name,
                    "SpanKind": SPAN_KINDS.get(span.kind, ""),
                    "ServiceName": service,
                    "ResourceAttributes": resource_attrs,
                    "ScopeName": scope_name,
                    "ScopeVersion": scope_version,
                    "SpanAttributes": attribute_map(span.attributes),
                    # A span ending before it starts would underflow UInt64: store 0.
                    "Duration": end - start if end > start else 0,
                    "StatusCode": STATUS_CODES.get(status.code, ""),
                    "StatusMessage": status.message,
                }
                events = span.events
                if events:
                    row["Events.Timestamp"] = [datetime64(e.time_unix_nano) for e in events]
                    row["Events.Name"] = [e.name for e in events]
                    row["Events.Attributes"] = [attribute_map(e.attributes) for e in events]
                else:
                    row["Events.Timestamp"] = row["Events.Name"] = row["Events.Attributes"] = []
                links = span.links
                if links:
                    row["Links.TraceId"] = [hex_id(link.trace_id) for link in links]
                    row["Links.SpanId"] = [hex_id(link.span_id) for link in links]
                    row["Links.TraceState"] = [link.trace_state for link in links]
                    row["Links.Attributes"] = [attribute_map(link.attributes) for link in links]
                else:
                    row["Links.TraceId"] = row["Links.SpanId"] = []
                    row["Links.TraceState"] = row["Links.Attributes"] = []
                rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------


def log_rows_by_table(request: ExportLogsServiceRequest) -> dict[str, list[dict[str, Any]]]:
    """Rows for ``otel_logs`` (log transform applied) and ``hyperdx_sessions`` (untouched).

    Both keys are always present, possibly with empty lists.
    """
    tables: dict[str, list[dict[str, Any]]] = {LOGS_TABLE: [], SESSIONS_TABLE: []}
    logs = tables[LOGS_TABLE]
    for resource_logs in request.resource_logs:
        resource = resource_logs.resource
        service = service_name(resource)
        resource_attrs = attribute_map(resource.attributes)
        resource_schema_url = resource_logs.schema_url
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope_attrs = attribute_map(scope.attributes)
            scope_schema_url = scope_logs.schema_url
            scope_name = scope.name
            scope_version = scope.version
            # Rows of one scope share its (never mutated) resource and scope maps.
            for record in scope_logs.log_records:
                severity_text = record.severity_text
                severity_number = record.severity_number
                plain = plain_log(record, severity_text, severity_number)
                if plain is not None:  # the transform would only stringify: skip it
                    body, attributes_map = plain
                    logs.append(
                        {
                            "Timestamp": datetime64(
                                record.time_unix_nano or record.observed_time_unix_nano
                            ),
                            "TraceId": hex_id(record.trace_id),
                            "SpanId": hex_id(record.span_id),
                            "TraceFlags": record.flags & 0xFF,
                            "ServiceName": service,
                            "Body": body,
                            "ResourceSchemaUrl": resource_schema_url,
                            "ResourceAttributes": resource_attrs,
                            "ScopeSchemaUrl": scope_schema_url,
                            "ScopeName": scope_name,
                            "ScopeVersion": scope_version,
                            "ScopeAttributes": scope_attrs,
                            "SeverityText": severity_text.lower(),
                            "SeverityNumber": severity_number & 0xFF,
                            "LogAttributes": attributes_map,
                            "EventName": record.event_name,
                        }
                    )
                    continue
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
                tables[table].append(row)
    return tables


def transformed_log(
    record: LogRecord,
    severity_text: str,
    severity_number: int,
    service: str,
    resource_schema_url: str,
    resource_attrs: dict[str, str],
    scope_schema_url: str,
    scope_name: str,
    scope_version: str,
    scope_attrs: dict[str, str],
) -> tuple[str, dict[str, Any]]:
    """(table, row) of a record :func:`plain_log` turned down: a session-replay record for
    ``hyperdx_sessions`` (untransformed), else the log transform applied for ``otel_logs``."""
    attributes = attributes_of(record.attributes)
    common: dict[str, Any] = {
        "Timestamp": datetime64(record.time_unix_nano or record.observed_time_unix_nano),
        "TraceId": hex_id(record.trace_id),
        "SpanId": hex_id(record.span_id),
        "TraceFlags": record.flags & 0xFF,
        "ServiceName": service,
        "Body": stringify(any_value_to_python(record.body)),
        "ResourceSchemaUrl": resource_schema_url,
        "ResourceAttributes": resource_attrs,
        "ScopeSchemaUrl": scope_schema_url,
        "ScopeName": scope_name,
        "ScopeVersion": scope_version,
        "ScopeAttributes": scope_attrs,
    }
    if RRWEB_ATTRIBUTE in attributes:
        common["SeverityText"] = severity_text
        common["SeverityNumber"] = severity_number & 0xFF
        common["LogAttributes"] = string_map(attributes)
        return SESSIONS_TABLE, common
    text, number, attributes = transform_log(record, attributes)
    common["SeverityText"] = text
    common["SeverityNumber"] = number & 0xFF
    common["LogAttributes"] = string_map(attributes)
    common["EventName"] = record.event_name
    return LOGS_TABLE, common


def plain_log(
    record: LogRecord, severity_text: str, severity_number: int
) -> tuple[str, dict[str, str]] | None:
    """(``Body``, ``LogAttributes``) of a record the log transform would only stringify,
    else None.

    That is: severity already set (nothing to promote or infer), a scalar body with no ``{``
    (no JSON to parse, no map to merge), scalar attributes (nothing to flatten) and no
    session-replay marker. Most SDK logs are like this; the transform costs ~3x more.
    """
    if severity_number == 0 and severity_text == "":
        return None
    body = record.body
    text = body.string_value
    if text:  # the common case: a set string names the oneof's kind without WhichOneof
        if "{" in text:
            return None
    else:
        kind = body.WhichOneof("value")
        if kind == "array_value" or kind == "kvlist_value":
            return None
        text = "" if kind is None else stringify(getattr(body, kind))
    try:
        attributes = attribute_map(record.attributes, scalar_only=True)
    except NestedValue:
        return None
    if RRWEB_ATTRIBUTE in attributes:
        return None
    return text, attributes


def log_rows(request: ExportLogsServiceRequest) -> list[dict[str, Any]]:
    """Rows for ``otel_logs`` only; session-replay records are left out (see
    :func:`log_rows_by_table`)."""
    return log_rows_by_table(request)[LOGS_TABLE]


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
        service = service_name(resource)
        resource_attrs = attribute_map(resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            head = {
                "ResourceAttributes": resource_attrs,
                "ResourceSchemaUrl": resource_metrics.schema_url,
                "ScopeName": scope.name,
                "ScopeVersion": scope.version,
                "ScopeAttributes": attribute_map(scope.attributes),
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
                "Attributes": attribute_map(point.attributes),
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
        "Exemplars.FilteredAttributes": [attribute_map(e.filtered_attributes) for e in items],
        "Exemplars.TimeUnix": [e.time_unix_nano // 1_000_000_000 for e in items],
        "Exemplars.Value": [_number(e) for e in items],
        "Exemplars.SpanId": [exemplar_id(e.span_id, 8) for e in items],
        "Exemplars.TraceId": [exemplar_id(e.trace_id, 16) for e in items],
    }
