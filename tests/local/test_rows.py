"""OTLP -> ClickStack row mapping, rule by rule (REFERENCE.md sections 1.6 and 2)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from hyperdx.local.rows import (
    any_value_to_python,
    format_double,
    log_rows,
    log_rows_by_table,
    metric_rows,
    stringify,
    trace_rows,
)

TRACE_ID = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN_ID = bytes.fromhex("b7ad6b7169203331")
PARENT_ID = bytes.fromhex("00f067aa0ba902b7")
T0 = 1_795_000_000_123_456_789  # ns; a 2026 timestamp with every digit significant


def av(value: Any) -> AnyValue:
    """Plain Python -> AnyValue (bool before int, bytes, lists, dicts)."""
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
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=kvs(value)))
    raise TypeError(value)


def kvs(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=av(v)) for k, v in values.items()]


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.5, "0.5"),
        (-2.25, "-2.25"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e-6, "0.000001"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-0.0, "-0"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
    ],
)
def test_doubles_format_like_es6_numbers(value: float, text: str) -> None:
    assert format_double(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        (True, "true"),
        (False, "false"),
        (-42, "-42"),
        (2**63 - 1, "9223372036854775807"),
        (3.0, "3"),
        (b"\x00\xffhi", "AP9oaQ=="),
        (b"", ""),
        (None, ""),
        ([1, "a", True, 2.5, None], '[1,"a",true,2.5,null]'),
        ({"b": 1, "a": {"z": [], "y": "<&>"}}, '{"a":{"y":"<&>","z":[]},"b":1}'),
        ([b"\x01"], '["AQ=="]'),
        (["line\nbreak", "\u2028"], '["line\\nbreak","\\u2028"]'),
        ([1e21, 1e-7], "[1e+21,1e-7]"),
        ([math.nan], ""),  # Go's JSON encoder refuses NaN: the whole value is empty
    ],
)
def test_attribute_values_are_stringified_like_the_exporter(value: Any, text: str) -> None:
    assert stringify(any_value_to_python(av(value))) == text


# --- traces ----------------------------------------------------------------------------------


def _span_request() -> ExportTraceServiceRequest:
    root = Span(
        trace_id=TRACE_ID,
        span_id=PARENT_ID,
        name="GET /users",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 1_500_000,
        attributes=kvs({"http.status_code": 500, "ratio": 0.25, "ok": False, "tags": ["a", "b"]}),
        status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
        trace_state="congo=t61rcWkgMzE",
        parent_span_id=b"\x00" * 8,
        events=[
            Span.Event(
                time_unix_nano=T0 + 5,
                name="exception",
                attributes=kvs({"exception.type": "ValueError", "exception.message": "bad"}),
            )
        ],
        links=[
            Span.Link(
                trace_id=TRACE_ID, span_id=SPAN_ID, trace_state="x=1", attributes=kvs({"n": 1})
            ),
            Span.Link(trace_id=b"\x00" * 16, span_id=b""),
        ],
    )
    child = Span(
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        parent_span_id=PARENT_ID,
        name="db",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=T0 + 10,
        end_time_unix_nano=T0 + 5,  # ends before it starts: Duration clamps to 0
        status=Status(code=Status.STATUS_CODE_OK),
    )
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=kvs({"service.name": "api", "host.name": "h1"})),
                scope_spans=[
                    ScopeSpans(
                        scope=InstrumentationScope(name="flask", version="0.66b1"), spans=[root]
                    )
                ],
            ),
            ResourceSpans(
                resource=Resource(attributes=kvs({"host.name": "h2"})),
                scope_spans=[ScopeSpans(spans=[child])],
            ),
        ]
    )


def test_span_rows_map_every_column() -> None:
    root, child = trace_rows(_span_request())
    assert root == {
        "Timestamp": "1795000000.123456789",
        "TraceId": "0af7651916cd43dd8448eb211c80319c",
        "SpanId": "00f067aa0ba902b7",
        "ParentSpanId": "",
        "TraceState": "congo=t61rcWkgMzE",
        "SpanName": "GET /users",
        "SpanKind": "Server",
        "ServiceName": "api",
        "ResourceAttributes": {"service.name": "api", "host.name": "h1"},
        "ScopeName": "flask",
        "ScopeVersion": "0.66b1",
        "SpanAttributes": {
            "http.status_code": "500",
            "ratio": "0.25",
            "ok": "false",
            "tags": '["a","b"]',
        },
        "Duration": 1_500_000,
        "StatusCode": "Error",
        "StatusMessage": "boom",
        "Events.Timestamp": ["1795000000.123456794"],
        "Events.Name": ["exception"],
        "Events.Attributes": [{"exception.type": "ValueError", "exception.message": "bad"}],
        "Links.TraceId": ["0af7651916cd43dd8448eb211c80319c", ""],
        "Links.SpanId": ["b7ad6b7169203331", ""],
        "Links.TraceState": ["x=1", ""],
        "Links.Attributes": [{"n": "1"}, {}],
    }
    # ServiceName is per resource: the second resource has none and must not inherit "api".
    assert child["ServiceName"] == ""
    assert child["ParentSpanId"] == "00f067aa0ba902b7"
    assert (child["SpanKind"], child["StatusCode"], child["Duration"]) == ("Client", "Ok", 0)


def test_span_kind_and_status_names_cover_every_enum_value() -> None:
    spans = [
        Span(
            span_id=SPAN_ID,
            kind=Span.SpanKind.ValueType(k),
            status=Status(code=Status.StatusCode.ValueType(k % 3)),
        )
        for k in range(6)
    ]
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
    )
    got = [(r["SpanKind"], r["StatusCode"]) for r in trace_rows(request)]
    assert got == [
        ("Unspecified", "Unset"),
        ("Internal", "Ok"),
        ("Server", "Error"),
        ("Client", "Unset"),
        ("Producer", "Ok"),
        ("Consumer", "Error"),
    ]


# --- logs ------------------------------------------------------------------------------------


def _logs(*records: LogRecord, resource: dict[str, Any] | None = None) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=kvs(resource or {"service.name": "worker"})),
                schema_url="https://opentelemetry.io/schemas/1.21.0",
                scope_logs=[
                    ScopeLogs(
                        scope=InstrumentationScope(
                            name="app.log", version="1.0", attributes=kvs({"s": 1})
                        ),
                        schema_url="scope-schema",
                        log_records=list(records),
                    )
                ],
            )
        ]
    )


def _one_log(**fields: Any) -> dict[str, Any]:
    body = fields.pop("body", None)
    attributes = fields.pop("attributes", {})
    fields.setdefault("time_unix_nano", T0)
    record = LogRecord(body=av(body), attributes=kvs(attributes), **fields)
    [row] = log_rows(_logs(record))
    return row


def test_log_row_columns() -> None:
    record = LogRecord(
        time_unix_nano=T0,
        observed_time_unix_nano=T0 + 1,
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        flags=0x101,
        severity_number=SeverityNumber.SEVERITY_NUMBER_ERROR,
        severity_text="ERROR",
        body=av("failed to charge card"),
        attributes=kvs({"user.id": 7}),
        event_name="payment.failed",
    )
    [row] = log_rows(_logs(record))
    assert row == {
        "Timestamp": "1795000000.123456789",
        "TraceId": "0af7651916cd43dd8448eb211c80319c",
        "SpanId": "b7ad6b7169203331",
        "TraceFlags": 1,
        "SeverityText": "error",
        "SeverityNumber": 17,
        "ServiceName": "worker",
        "Body": "failed to charge card",
        "ResourceSchemaUrl": "https://opentelemetry.io/schemas/1.21.0",
        "ResourceAttributes": {"service.name": "worker"},
        "ScopeSchemaUrl": "scope-schema",
        "ScopeName": "app.log",
        "ScopeVersion": "1.0",
        "ScopeAttributes": {"s": "1"},
        "LogAttributes": {"user.id": "7"},
        "EventName": "payment.failed",
    }


def test_log_timestamp_falls_back_to_observed_time_and_zero_ids_are_empty() -> None:
    row = _one_log(
        time_unix_nano=0, observed_time_unix_nano=T0 + 7, trace_id=b"\x00" * 16, span_id=b""
    )
    assert (row["Timestamp"], row["TraceId"], row["SpanId"]) == ("1795000000.123456796", "", "")


def test_json_object_in_a_string_body_is_upserted_into_attributes() -> None:
    row = _one_log(
        body='request done {"status": 200, "ms": 1.5, "user": {"id": "u1"}, "tags": ["a"]} ok',
        attributes={"status": "overwritten", "kept": True},
    )
    assert row["LogAttributes"] == {
        "status": "200",
        "kept": "true",
        "ms": "1.5",
        "user.id": "u1",
        "tags.0": "a",
    }
    assert row["Body"].startswith("request done {")


def test_invalid_or_multiline_json_in_body_is_ignored() -> None:
    assert _one_log(body="set {not json}")["LogAttributes"] == {}
    assert _one_log(body='{\n  "a": 1\n}')["LogAttributes"] == {}
    assert _one_log(body="[1, 2]")["LogAttributes"] == {}


def test_attributes_are_flattened() -> None:
    row = _one_log(
        body="x",
        attributes={
            "attr": {"intValue": 1, "deeper": {"b": False}},
            "list": [1, {"k": "v"}, [2, 3]],
            "empty": {},
            "plain": 0.5,
        },
    )
    assert row["LogAttributes"] == {
        "attr.intValue": "1",
        "attr.deeper.b": "false",
        "list.0": "1",
        "list.1.k": "v",
        "list.2.0": "2",
        "list.2.1": "3",
        "plain": "0.5",
    }


def test_map_body_entries_are_upserted_after_flattening_and_body_kept_as_json() -> None:
    row = _one_log(
        body={"msg": "hi", "ctx": {"a": 1}, "level": "Warning"},
        attributes={"msg": "old"},
    )
    assert row["LogAttributes"] == {"msg": "hi", "ctx": '{"a":1}', "level": "Warning"}
    assert row["Body"] == '{"ctx":{"a":1},"level":"Warning","msg":"hi"}'
    # promoted from the body's level, lower-cased
    assert (row["SeverityText"], row["SeverityNumber"]) == ("warning", 13)


@pytest.mark.parametrize(
    ("attributes", "text", "number"),
    [
        ({"level": "WARNING"}, "warning", 13),
        ({"Level": "Critical"}, "critical", 21),
        ({"log.level": "debug"}, "debug", 5),
        ({"severity": "notice"}, "notice", 13),
        ({"LEVEL": "info-error"}, "info-error", 9),  # later rules override: info wins
        ({"level": "verbose"}, "verbose", 9),  # no match -> info's number
        ({"level": "", "Severity": "ERR"}, "err", 17),  # empty values are skipped
        ({"level": 30, "severity": "TRACE"}, "trace", 1),  # numbers are ignored
    ],
)
def test_severity_promotion_from_level_attributes(
    attributes: dict[str, Any], text: str, number: int
) -> None:
    row = _one_log(body="nothing to infer here", attributes=attributes)
    assert (row["SeverityText"], row["SeverityNumber"]) == (text, number)


def test_severity_promotion_from_json_body() -> None:
    row = _one_log(body='{"level":"error","msg":"x"}')
    assert (row["SeverityText"], row["SeverityNumber"]) == ("error", 17)


@pytest.mark.parametrize(
    ("body", "text", "number"),
    [
        ("Critical: disk full", "fatal", 21),
        ("EMERGENCY", "fatal", 21),
        ("2 errors happened", "error", 17),
        ("warning: low memory then error", "warn", 13),  # first keyword in the text wins
        ("[dbug] cache miss", "debug", 5),
        ("trace id 1", "trace", 1),
        ("user logged in", "info", 9),
        ("no_error here", "info", 9),  # "_" is a word character: not a word start
        ("x" * 256 + " error", "info", 9),  # only the first 256 characters count
        (None, "info", 9),
    ],
)
def test_severity_inference_from_body(body: str | None, text: str, number: int) -> None:
    row = _one_log(body=body)
    assert (row["SeverityText"], row["SeverityNumber"]) == (text, number)


def test_producer_severity_is_never_overwritten() -> None:
    only_number = _one_log(body="error!", severity_number=9)
    assert (only_number["SeverityText"], only_number["SeverityNumber"]) == ("", 9)
    only_text = _one_log(body="error!", severity_text="NOTICE", attributes={"level": "error"})
    assert (only_text["SeverityText"], only_text["SeverityNumber"]) == ("notice", 0)


def test_session_replay_records_go_to_hyperdx_sessions_untransformed() -> None:
    replay = LogRecord(
        time_unix_nano=T0,
        severity_text="INFO",
        body=av('{"type": 4, "data": {"href": "https://example.com"}}'),
        attributes=kvs({"rr-web.event": 0, "nested": {"a": 1}}),
    )
    normal = LogRecord(time_unix_nano=T0, body=av("hello"))
    tables = log_rows_by_table(_logs(replay, normal))
    [session] = tables["hyperdx_sessions"]
    assert session["SeverityText"] == "INFO"  # not lower-cased
    assert session["SeverityNumber"] == 0  # not inferred
    assert session["LogAttributes"] == {"rr-web.event": "0", "nested": '{"a":1}'}
    assert "EventName" not in session
    assert [r["Body"] for r in tables["otel_logs"]] == ["hello"]


# --- metrics ---------------------------------------------------------------------------------


def _metrics(*metrics: m.Metric) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(
        resource_metrics=[
            m.ResourceMetrics(
                resource=Resource(attributes=kvs({"service.name": "api"})),
                schema_url="rs",
                scope_metrics=[
                    m.ScopeMetrics(
                        scope=InstrumentationScope(
                            name="meter", version="2", dropped_attributes_count=3
                        ),
                        schema_url="ss",
                        metrics=list(metrics),
                    )
                ],
            )
        ]
    )


HEAD = {
    "ResourceAttributes": {"service.name": "api"},
    "ResourceSchemaUrl": "rs",
    "ScopeName": "meter",
    "ScopeVersion": "2",
    "ScopeAttributes": {},
    "ScopeDroppedAttrCount": 3,
    "ScopeSchemaUrl": "ss",
    "ServiceName": "api",
}
EXEMPLAR = m.Exemplar(
    time_unix_nano=T0,
    as_int=7,
    trace_id=TRACE_ID,
    span_id=SPAN_ID,
    filtered_attributes=kvs({"f": 1}),
)
NO_EXEMPLARS: dict[str, list[Any]] = {
    "Exemplars.FilteredAttributes": [],
    "Exemplars.TimeUnix": [],
    "Exemplars.Value": [],
    "Exemplars.SpanId": [],
    "Exemplars.TraceId": [],
}


def _point_head(name: str, unit: str = "1", attrs: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        **HEAD,
        "MetricName": name,
        "MetricDescription": f"{name} help",
        "MetricUnit": unit,
        "Attributes": attrs or {},
        "StartTimeUnix": 1_794_999_000,
        "TimeUnix": 1_795_000_000,
    }


def test_gauge_and_sum_rows() -> None:
    start = 1_794_999_000_999_999_999  # sub-second part is truncated
    gauge = m.Metric(
        name="temp",
        description="temp help",
        unit="1",
        gauge=m.Gauge(
            data_points=[
                m.NumberDataPoint(
                    start_time_unix_nano=start,
                    time_unix_nano=T0,
                    as_double=21.5,
                    attributes=kvs({"room": "a"}),
                    exemplars=[EXEMPLAR, m.Exemplar(time_unix_nano=T0, as_double=0.5)],
                ),
                m.NumberDataPoint(start_time_unix_nano=start, time_unix_nano=T0, flags=1),
            ]
        ),
    )
    total = m.Metric(
        name="requests",
        description="requests help",
        unit="{request}",
        sum=m.Sum(
            aggregation_temporality=m.AGGREGATION_TEMPORALITY_CUMULATIVE,
            is_monotonic=True,
            data_points=[
                m.NumberDataPoint(start_time_unix_nano=start, time_unix_nano=T0, as_int=3)
            ],
        ),
    )
    tables = metric_rows(_metrics(gauge, total))
    assert set(tables) == {
        "otel_metrics_gauge",
        "otel_metrics_sum",
        "otel_metrics_histogram",
        "otel_metrics_exponential_histogram",
        "otel_metrics_summary",
    }
    first, empty = tables["otel_metrics_gauge"]
    assert first == {
        **_point_head("temp", attrs={"room": "a"}),
        "Value": 21.5,
        "Flags": 0,
        "Exemplars.FilteredAttributes": [{"f": "1"}, {}],
        "Exemplars.TimeUnix": [1_795_000_000, 1_795_000_000],
        "Exemplars.Value": [7.0, 0.5],
        "Exemplars.SpanId": ["b7ad6b7169203331", "0000000000000000"],
        "Exemplars.TraceId": ["0af7651916cd43dd8448eb211c80319c", "0" * 32],
    }
    assert (empty["Value"], empty["Flags"]) == (0.0, 1)
    [row] = tables["otel_metrics_sum"]
    assert row == {
        **_point_head("requests", unit="{request}"),
        "Value": 3.0,
        "Flags": 0,
        **NO_EXEMPLARS,
        "AggregationTemporality": 2,
        "IsMonotonic": True,
    }


def test_histogram_rows() -> None:
    histogram = m.Metric(
        name="latency",
        description="latency help",
        unit="ms",
        histogram=m.Histogram(
            aggregation_temporality=m.AGGREGATION_TEMPORALITY_DELTA,
            data_points=[
                m.HistogramDataPoint(
                    start_time_unix_nano=1_794_999_000_000_000_000,
                    time_unix_nano=T0,
                    count=4,
                    sum=10.5,
                    bucket_counts=[1, 2, 1],
                    explicit_bounds=[5.0, 10.0],
                    min=0.5,
                    max=7.0,
                    exemplars=[EXEMPLAR],
                ),
                m.HistogramDataPoint(time_unix_nano=T0, count=0),  # no sum/min/max
            ],
        ),
    )
    full, bare = metric_rows(_metrics(histogram))["otel_metrics_histogram"]
    assert full == {
        **_point_head("latency", unit="ms"),
        "Count": 4,
        "Sum": 10.5,
        "BucketCounts": [1, 2, 1],
        "ExplicitBounds": [5.0, 10.0],
        "Exemplars.FilteredAttributes": [{"f": "1"}],
        "Exemplars.TimeUnix": [1_795_000_000],
        "Exemplars.Value": [7.0],
        "Exemplars.SpanId": ["b7ad6b7169203331"],
        "Exemplars.TraceId": ["0af7651916cd43dd8448eb211c80319c"],
        "Flags": 0,
        "Min": 0.5,
        "Max": 7.0,
        "AggregationTemporality": 1,
    }
    assert (bare["Sum"], bare["Min"], bare["Max"], bare["StartTimeUnix"]) == (0.0, 0.0, 0.0, 0)


def test_exponential_histogram_and_summary_rows() -> None:
    exp = m.Metric(
        name="size",
        description="size help",
        unit="By",
        exponential_histogram=m.ExponentialHistogram(
            aggregation_temporality=m.AGGREGATION_TEMPORALITY_CUMULATIVE,
            data_points=[
                m.ExponentialHistogramDataPoint(
                    start_time_unix_nano=1_794_999_000_000_000_000,
                    time_unix_nano=T0,
                    count=5,
                    sum=12.0,
                    scale=3,
                    zero_count=1,
                    positive=m.ExponentialHistogramDataPoint.Buckets(
                        offset=-2, bucket_counts=[1, 2]
                    ),
                    negative=m.ExponentialHistogramDataPoint.Buckets(offset=4, bucket_counts=[1]),
                    min=-1.0,
                    max=9.0,
                    flags=0,
                )
            ],
        ),
    )
    summary = m.Metric(
        name="rtt",
        description="rtt help",
        unit="s",
        summary=m.Summary(
            data_points=[
                m.SummaryDataPoint(
                    start_time_unix_nano=1_794_999_000_000_000_000,
                    time_unix_nano=T0,
                    count=10,
                    sum=2.5,
                    quantile_values=[
                        m.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=0.2),
                        m.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=0.9),
                    ],
                    flags=1,
                )
            ]
        ),
    )
    tables = metric_rows(_metrics(exp, summary))
    [erow] = tables["otel_metrics_exponential_histogram"]
    assert erow == {
        **_point_head("size", unit="By"),
        "Count": 5,
        "Sum": 12.0,
        "Scale": 3,
        "ZeroCount": 1,
        "PositiveOffset": -2,
        "PositiveBucketCounts": [1, 2],
        "NegativeOffset": 4,
        "NegativeBucketCounts": [1],
        **NO_EXEMPLARS,
        "Flags": 0,
        "Min": -1.0,
        "Max": 9.0,
        "AggregationTemporality": 2,
    }
    [srow] = tables["otel_metrics_summary"]
    assert srow == {
        **_point_head("rtt", unit="s"),
        "Count": 10,
        "Sum": 2.5,
        "ValueAtQuantiles.Quantile": [0.5, 0.99],
        "ValueAtQuantiles.Value": [0.2, 0.9],
        "Flags": 1,
    }


# --- values ClickHouse must accept -----------------------------------------------------------


def test_zero_and_out_of_range_timestamps_stay_parseable() -> None:
    # ClickHouse misreads short "<sec>.<ns>" strings, and DateTime64(9) ends in 2262.
    zero = _one_log(time_unix_nano=0, observed_time_unix_nano=0)
    assert zero["Timestamp"] == "1970-01-01 00:00:00.000000000"
    early = _one_log(time_unix_nano=999_999_999_000_000_123)
    assert early["Timestamp"] == "2001-09-09 01:46:39.000000123"
    assert _one_log(time_unix_nano=2**64 - 1)["Timestamp"] == "9223372036.854775807"
    [span] = trace_rows(
        ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    scope_spans=[ScopeSpans(spans=[Span(events=[Span.Event(name="no time")])])]
                )
            ]
        )
    )
    assert span["Timestamp"] == span["Events.Timestamp"][0] == "1970-01-01 00:00:00.000000000"


def test_lone_surrogates_from_json_bodies_become_replacement_characters() -> None:
    row = _one_log(body='{"k\\ud800": "a\\udc00b", "emoji": "\\ud83d\\ude00"}')
    assert row["LogAttributes"] == {"k\ufffd": "a\ufffdb", "emoji": "\U0001f600"}
