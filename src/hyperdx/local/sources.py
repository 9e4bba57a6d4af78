"""The HyperDX sources and connection that describe `hyperdx local`'s tables.

Same names, kinds and column expressions as ClickStack's default sources (HyperDX's
``DEFAULT_SOURCES``), cross-linked the way the HyperDX app links them, so `hdx` and the
HyperDX UI treat these tables exactly like a ClickStack deployment's.
"""

from __future__ import annotations

from typing import Any

from hyperdx.local.store import DATABASE

# Stable ObjectId-shaped ids (HyperDX ids are 24 hex digits): a restart keeps the same ids,
# so an `hdx` session or a script that saved one keeps working.
CONNECTION_ID = "686c6f63616c000000000001"
TEAM_ID = "686c6f63616c000000000002"
USER_ID = "686c6f63616c000000000003"
LOG_SOURCE_ID = "686c6f63616c000000000010"
TRACE_SOURCE_ID = "686c6f63616c000000000011"
METRIC_SOURCE_ID = "686c6f63616c000000000012"
SESSION_SOURCE_ID = "686c6f63616c000000000013"


def connections(clickhouse_url: str) -> list[dict[str, Any]]:
    """The one ClickHouse connection: our ClickHouse HTTP interface."""
    return [
        {
            "id": CONNECTION_ID,
            "_id": CONNECTION_ID,
            "name": "Local",
            "host": clickhouse_url,
            "username": "default",
            "team": TEAM_ID,
        }
    ]


def _common(source_id: str, name: str, kind: str, table: str) -> dict[str, Any]:
    return {
        "id": source_id,
        "_id": source_id,
        "name": name,
        "kind": kind,
        "team": TEAM_ID,
        "connection": CONNECTION_ID,
        "from": {"databaseName": DATABASE, "tableName": table},
        "querySettings": [],
    }


#: Column expressions of the log-shaped tables (otel_logs, and hyperdx_sessions which has the
#: same columns): one definition for both sources.
_LOG_COLUMNS: dict[str, Any] = {
    "defaultTableSelectExpression": "Timestamp, ServiceName, SeverityText, Body",
    "implicitColumnExpression": "Body",
    "bodyExpression": "Body",
    "serviceNameExpression": "ServiceName",
    "severityTextExpression": "SeverityText",
    "eventAttributesExpression": "LogAttributes",
    "resourceAttributesExpression": "ResourceAttributes",
    "traceIdExpression": "TraceId",
    "spanIdExpression": "SpanId",
}


def sources() -> list[dict[str, Any]]:
    """Logs, Traces, Metrics and Sessions over ClickStack's tables."""
    logs = (
        _common(LOG_SOURCE_ID, "Logs", "log", "otel_logs")
        | _LOG_COLUMNS
        | {
            "timestampValueExpression": "Timestamp",
            "displayedTimestampValueExpression": "Timestamp",
            "orderByExpression": "Timestamp DESC",
            "traceSourceId": TRACE_SOURCE_ID,
            "metricSourceId": METRIC_SOURCE_ID,
            "sessionSourceId": SESSION_SOURCE_ID,
            "metadataMaterializedViews": {
                "kvRollupTable": "otel_logs_kv_rollup_15m",
                "kvRollupGranularity": "15 minute",
            },
        }
    )
    traces = _common(TRACE_SOURCE_ID, "Traces", "trace", "otel_traces") | {
        "timestampValueExpression": "Timestamp",
        "displayedTimestampValueExpression": "Timestamp",
        "defaultTableSelectExpression": (
            "Timestamp, ServiceName, StatusCode, round(Duration / 1e6), SpanName"
        ),
        "implicitColumnExpression": "SpanName",
        "serviceNameExpression": "ServiceName",
        "eventAttributesExpression": "SpanAttributes",
        "resourceAttributesExpression": "ResourceAttributes",
        "traceIdExpression": "TraceId",
        "spanIdExpression": "SpanId",
        "parentSpanIdExpression": "ParentSpanId",
        "spanNameExpression": "SpanName",
        "spanKindExpression": "SpanKind",
        "durationExpression": "Duration",
        "durationPrecision": 9,
        "statusCodeExpression": "StatusCode",
        "statusMessageExpression": "StatusMessage",
        "spanEventsValueExpression": "Events",
        "orderByExpression": "Timestamp DESC",
        "logSourceId": LOG_SOURCE_ID,
        "metricSourceId": METRIC_SOURCE_ID,
        "sessionSourceId": SESSION_SOURCE_ID,
        "metadataMaterializedViews": {
            "kvRollupTable": "otel_traces_kv_rollup_15m",
            "kvRollupGranularity": "15 minute",
        },
    }
    metrics = _common(METRIC_SOURCE_ID, "Metrics", "metric", "") | {
        "timestampValueExpression": "TimeUnix",
        "serviceNameExpression": "ServiceName",
        "resourceAttributesExpression": "ResourceAttributes",
        "metricTables": {
            "gauge": "otel_metrics_gauge",
            "sum": "otel_metrics_sum",
            "histogram": "otel_metrics_histogram",
            "summary": "otel_metrics_summary",
            "exponential histogram": "otel_metrics_exponential_histogram",
        },
        "logSourceId": LOG_SOURCE_ID,
        "traceSourceId": TRACE_SOURCE_ID,
    }
    sessions = (
        _common(SESSION_SOURCE_ID, "Sessions", "session", "hyperdx_sessions")
        | _LOG_COLUMNS
        | {
            "timestampValueExpression": "TimestampTime",
            "displayedTimestampValueExpression": "Timestamp",
            "traceSourceId": TRACE_SOURCE_ID,
            "logSourceId": LOG_SOURCE_ID,
        }
    )
    return [logs, traces, metrics, sessions]
