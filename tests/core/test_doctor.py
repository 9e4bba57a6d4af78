"""`hyperdx doctor` against a real receiver: each failure gets the right one-line diagnosis."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.apps import BIN, base_env, free_port
from support.otlp import running_receiver

KEY = "doctor-key-1234567890"


def doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hyperdx"), "doctor"],
        env=base_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthy_setup_is_accepted_and_the_key_is_masked() -> None:
    with running_receiver(api_keys=[KEY]) as (receiver, sink):
        result = doctor(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_url,
                "HYPERDX_API_KEY": KEY,
                "OTEL_SERVICE_NAME": "doc",
            }
        )
        sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "hyperdx doctor")
        sink.wait_for("otel_logs", where=lambda r: r["Body"] == "hyperdx doctor test record")
        sink.wait_for(
            "otel_metrics_sum", where=lambda r: r["MetricName"] == "hyperdx.doctor.checks"
        )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "ok   traces   accepted (200)" in out
    assert "ok   logs     accepted (200)" in out
    assert "ok   metrics  accepted (200)" in out
    assert "service_name" in out and "doc" in out and "environment" in out
    assert KEY not in out + result.stderr
    assert "********" in out


def test_missing_wrong_and_bearer_keys_get_distinct_advice() -> None:
    with running_receiver(api_keys=[KEY]) as (receiver, _):
        base = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_url, "OTEL_SERVICE_NAME": "doc"}
        missing = doctor(base)
        wrong = doctor({**base, "HYPERDX_API_KEY": "not-the-key-abcdef"})
        bearer = doctor({**base, "HYPERDX_API_KEY": f"Bearer {KEY}"})
    assert missing.returncode == 1
    assert (
        "FAIL traces   401 Unauthorized: the endpoint requires an ingestion key; set "
        "HYPERDX_API_KEY" in missing.stdout
    )
    assert "401 Unauthorized: the key from HYPERDX_API_KEY was rejected" in wrong.stdout
    assert "not-the-key-abcdef" not in wrong.stdout + wrong.stderr  # the 401 echoes it; we don't
    assert "remove the 'Bearer ' prefix" in bearer.stdout
    assert KEY not in bearer.stdout


def test_wrong_path_and_refused_connection() -> None:
    with running_receiver() as (receiver, _):
        wrong_path = doctor({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_url + "/v1/traces"})
    assert "404 Not Found" in wrong_path.stdout and "base URL" in wrong_path.stdout
    refused = doctor({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    assert refused.returncode == 1
    assert "connection refused" in refused.stdout
    assert "FAIL TCP 127.0.0.1" in refused.stdout


def test_configuration_error_is_named() -> None:
    result = doctor({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert result.returncode == 1
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='http/json'" in result.stdout


def test_grpc_round_trip() -> None:
    with running_receiver(api_keys=[KEY], grpc=True) as (receiver, sink):
        result = doctor(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_url,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "HYPERDX_API_KEY": KEY,
            }
        )
        sink.wait_for("otel_traces")
    assert "ok   traces   accepted (gRPC OK)" in result.stdout, result.stdout + result.stderr


def test_release_pairing_rule_on_version_maps() -> None:
    from hyperdx.opentelemetry.doctor import release_mismatch

    sdk_requires = ["opentelemetry-api==1.45.1", "opentelemetry-semantic-conventions==0.66b1"]
    together = {
        "opentelemetry-sdk": "1.45.1",
        "opentelemetry-instrumentation": "0.66b1",
        "opentelemetry-instrumentation-flask": "0.66b0",  # same release line, other patch
        "opentelemetry-exporter-otlp-proto-http": "1.45.1",
    }
    assert release_mismatch(together, sdk_requires) is None
    assert release_mismatch({"opentelemetry-instrumentation": "0.60b0"}) is None  # no SDK
    mixed = release_mismatch(
        {**together, "opentelemetry-instrumentation-flask": "0.60b0"}, sdk_requires
    )
    assert mixed is not None
    assert mixed.mismatched == {"opentelemetry-instrumentation-flask": "0.60b0"}
    assert mixed.lines() == [
        "opentelemetry-sdk 1.45.1 belongs with contrib 0.66b1; installed: "
        "opentelemetry-instrumentation-flask 0.60b0",
        "fix: pip install 'opentelemetry-instrumentation==0.66b1' && "
        "opentelemetry-bootstrap -a install",
    ]
    # Without the SDK's metadata the rule alone names the release line: 1.40 <-> 0.61.
    older = release_mismatch(
        {"opentelemetry-sdk": "1.40.0", "opentelemetry-instrumentation": "0.66b1"}
    )
    assert older is not None and older.expected_contrib == "0.61b0"


def test_doctor_warns_about_a_real_mismatched_install(tmp_path: Path) -> None:
    """A real older contrib package (from the index) shadows the installed one."""
    import sys

    target = tmp_path / "old-contrib"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            "opentelemetry-instrumentation-flask==0.60b0",
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    with running_receiver() as (receiver, _):
        result = doctor(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_url, "PYTHONPATH": str(target)}
        )
    from importlib import metadata

    sdk = metadata.version("opentelemetry-sdk")
    assert "OpenTelemetry packages from different releases" in result.stdout, result.stdout
    assert (
        f"opentelemetry-sdk {sdk} belongs with contrib" in result.stdout
        and "installed: opentelemetry-instrumentation-flask 0.60b0" in result.stdout
    )
    assert "fix: pip install 'opentelemetry-instrumentation==0." in result.stdout
    assert "opentelemetry-bootstrap -a install" in result.stdout
    # The warning does not fail the round trip.
    assert result.returncode == 0, result.stdout + result.stderr


def test_doctor_is_quiet_when_the_releases_belong_together() -> None:
    with running_receiver() as (receiver, _):
        result = doctor({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "different releases" not in result.stdout
