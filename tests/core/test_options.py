"""Configuration: precedence, sources, strict parsing and clear errors (no network)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.sampling import ParentBased

from hyperdx.opentelemetry.options import ConfigurationError, HyperDXOptions, resolve
from hyperdx.opentelemetry.traces import build_sampler


def test_defaults_point_at_a_local_clickstack_never_a_hosted_service() -> None:
    s = resolve(env={})
    assert s.traces.endpoint.value == "http://localhost:4318/v1/traces"
    assert s.logs.endpoint.value == "http://localhost:4318/v1/logs"
    assert s.metrics.endpoint.value == "http://localhost:4318/v1/metrics"
    assert {s.traces.protocol.value, s.traces.endpoint.source} == {"http/protobuf", "default"}
    assert s.traces.compression == "gzip"
    assert s.metric_export_interval_ms.value == 60_000
    assert s.service_name.value == "unknown_service:python"
    assert any("OTEL_SERVICE_NAME" in w for w in s.warnings)
    assert any("HYPERDX_API_KEY" in w for w in s.warnings)


def test_code_beats_environment_beats_default_and_each_value_knows_its_source() -> None:
    env = {
        "OTEL_SERVICE_NAME": "from-env",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318",
        "HYPERDX_API_KEY": "env-key",
    }
    s = resolve(HyperDXOptions(service_name="from-code"), env=env)
    assert (s.service_name.value, s.service_name.source) == ("from-code", "code")
    assert (s.traces.endpoint.value, s.traces.endpoint.source) == (
        "http://env:4318/v1/traces",
        "environment",
    )
    assert (s.traces.apikey.value, s.traces.apikey.source) == ("env-key", "environment")
    assert s.debug.source == "default"
    rows = {name: (shown, source) for name, shown, source, _ in s.rows()}
    assert rows["service_name"] == ("from-code", "code")
    assert rows["traces.apikey"] == ("********", "environment")  # masked, never echoed


def test_api_key_is_a_bare_authorization_header_and_per_signal_keys_win() -> None:
    env = {"HYPERDX_API_KEY": "k-all", "HYPERDX_LOGS_APIKEY": "k-logs"}
    s = resolve(env=env)
    assert s.traces.export_headers() == {"authorization": "k-all"}
    assert s.metrics.export_headers() == {"authorization": "k-all"}
    assert s.logs.export_headers() == {"authorization": "k-logs"}


def test_no_key_means_no_authorization_header_at_all() -> None:
    s = resolve(env={})
    for signal in ("traces", "logs", "metrics"):
        assert "authorization" not in s.signal(signal).export_headers()


def test_otlp_headers_are_merged_with_ours() -> None:
    env = {
        "HYPERDX_API_KEY": "k",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-team=a%20b,Authorization=old",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-trace=1",
    }
    s = resolve(env=env)
    assert s.traces.export_headers() == {"x-team": "a b", "x-trace": "1", "authorization": "k"}
    assert s.logs.export_headers() == {"x-team": "a b", "authorization": "k"}


def test_service_name_falls_back_to_resource_attributes() -> None:
    s = resolve(env={"OTEL_RESOURCE_ATTRIBUTES": "team=a,service.name=from-attrs"})
    assert (s.service_name.value, s.service_name.variable) == (
        "from-attrs",
        "OTEL_RESOURCE_ATTRIBUTES",
    )
    assert not any("OTEL_SERVICE_NAME" in w for w in s.warnings)


def test_per_signal_endpoints_are_used_as_given() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "https://logs.example:9999/custom",
    }
    s = resolve(env=env)
    assert s.traces.endpoint.value == "https://collector:4318/v1/traces"
    assert s.logs.endpoint.value == "https://logs.example:9999/custom"


@pytest.mark.parametrize(
    ("env", "variable", "value"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"},
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "localhost:4318",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "http://"),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://h:99999/v1/traces"},
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://h:99999/v1/traces",
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "thrift"},
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "thrift",
        ),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
    ],
)
def test_unusable_values_are_one_error_naming_variable_and_value(
    env: dict[str, str], variable: str, value: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve(env=env)
    assert variable in str(info.value)
    assert value in str(info.value)


def test_grpc_protocol_defaults_to_port_4317_without_a_path() -> None:
    s = resolve(env={"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert s.traces.endpoint.value == "http://localhost:4317"
    assert s.traces.protocol.value == "grpc"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("On", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
)
def test_booleans_parse_strictly(raw: str, expected: bool) -> None:
    s = resolve(env={"DEBUG": raw, "HYPERDX_ENABLE_ADVANCED_NETWORK_CAPTURE": raw})
    assert s.debug.value is expected
    assert s.capture_enabled.value is expected
    assert s.debug.source == "environment"


def test_a_bad_boolean_is_a_warning_naming_variable_and_value_and_the_default_stays() -> None:
    s = resolve(env={"DEBUG": "banana", "HYPERDX_ENABLE_ADVANCED_NETWORK_CAPTURE": "maybe"})
    assert s.debug.value is False and s.capture_enabled.value is False
    assert any("DEBUG='banana'" in w for w in s.warnings)
    assert any("HYPERDX_ENABLE_ADVANCED_NETWORK_CAPTURE='maybe'" in w for w in s.warnings)


def test_bad_numbers_warn_and_keep_defaults() -> None:
    s = resolve(env={"OTEL_METRIC_EXPORT_INTERVAL": "soon", "HYPERDX_SHUTDOWN_TIMEOUT": "-1"})
    assert s.metric_export_interval_ms.value == 60_000
    assert s.shutdown_timeout.value == 5.0
    assert any("OTEL_METRIC_EXPORT_INTERVAL='soon'" in w for w in s.warnings)
    assert any("HYPERDX_SHUTDOWN_TIMEOUT='-1'" in w for w in s.warnings)


def test_exporter_none_disables_one_signal_and_sdk_disabled_is_read() -> None:
    s = resolve(env={"OTEL_LOGS_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"})
    assert s.logs.enabled.value is False
    assert s.traces.enabled.value is True
    assert s.sdk_disabled.value is True


def test_log_level_raises_the_handler_level_only_when_asked() -> None:
    assert resolve(env={}).log_level.value == 0
    assert resolve(env={"HYPERDX_LOG_LEVEL": "error"}).log_level.value == 40
    bad = resolve(env={"HYPERDX_LOG_LEVEL": "loud"})
    assert bad.log_level.value == 0
    assert any("HYPERDX_LOG_LEVEL='loud'" in w for w in bad.warnings)


def test_sample_rate_is_parent_based_and_never_mutates_the_callers_attributes() -> None:
    from types import MappingProxyType

    sampler = build_sampler(resolve(HyperDXOptions(sample_rate=4), env={}))
    assert isinstance(sampler, ParentBased)
    attrs = {"k": "v"}
    frozen = MappingProxyType({"k": "v"})
    for trace_id in range(1, 200):
        sampler.should_sample(None, trace_id << 64, "span", attributes=attrs)
        sampler.should_sample(None, trace_id << 64, "span", attributes=frozen)
    assert attrs == {"k": "v"}
    assert build_sampler(resolve(env={})) is None  # the SDK's parent-based default / env


def test_invalid_redaction_pattern_is_rejected_by_name() -> None:
    with pytest.raises(ConfigurationError, match="HYPERDX_CAPTURE_REDACT_PATTERNS"):
        resolve(env={"HYPERDX_CAPTURE_REDACT_PATTERNS": "ok,([unclosed"})
