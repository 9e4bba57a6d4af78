"""`hyperdx doctor`: the effective configuration, the endpoint checked, and a real round trip.

It sends one span, one log record and one metric, encoded exactly as the SDK's exporters
encode them and with the configured headers, and turns each answer into one line saying what
to fix. The collector echoes a rejected key in its 401 message, so answers are never printed
raw: the key is masked wherever it appears.
"""

from __future__ import annotations

import gzip
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import click

from hyperdx.opentelemetry.options import (
    SECRET_PLACEHOLDER,
    ConfigurationError,
    Settings,
    SignalSettings,
    resolve,
)
from hyperdx.opentelemetry.resource import build_resource

TIMEOUT_S = 5.0


@dataclass
class Outcome:
    ok: bool
    line: str


def _mask(text: str, settings: Settings) -> str:
    for sig in (settings.traces, settings.logs, settings.metrics):
        if sig.apikey.value:
            text = text.replace(sig.apikey.value, SECRET_PLACEHOLDER)
    return text


def _payloads(settings: Settings) -> dict[str, bytes]:
    """One span, one log record and one metric point, as protobuf request bodies."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    resource = build_resource(settings)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(
        metric_readers=[reader], resource=resource, shutdown_on_exit=False
    )

    with tracer_provider.get_tracer("hyperdx.doctor").start_as_current_span("hyperdx doctor"):
        from opentelemetry._logs import LogRecord, SeverityNumber

        logger_provider.get_logger("hyperdx.doctor").emit(
            LogRecord(
                body="hyperdx doctor test record",
                severity_text="INFO",
                severity_number=SeverityNumber.INFO,
            )
        )
    meter_provider.get_meter("hyperdx.doctor").create_counter("hyperdx.doctor.checks").add(1)
    metrics_data = reader.get_metrics_data()
    assert metrics_data is not None
    return {
        "traces": encode_spans(spans.get_finished_spans()).SerializeToString(),
        "logs": encode_logs(logs.get_finished_logs()).SerializeToString(),
        "metrics": encode_metrics(metrics_data).SerializeToString(),
    }


def _explain_status(status: int, sig: SignalSettings, detail: str) -> str:
    key = sig.apikey.value
    if status == 401:
        if not key:
            return "401 Unauthorized: the endpoint requires an ingestion key; set HYPERDX_API_KEY"
        if key.lower().startswith("bearer "):
            return (
                "401 Unauthorized: remove the 'Bearer ' prefix; ClickStack expects the "
                "bare key in the authorization header"
            )
        return (
            f"401 Unauthorized: the key from {sig.apikey.variable or 'apikey'} was "
            "rejected; copy the ingestion key from HyperDX (Team Settings) again"
        )
    if status == 404:
        return (
            f"404 Not Found at {sig.endpoint.value}: wrong path; set "
            "OTEL_EXPORTER_OTLP_ENDPOINT to the collector's base URL (http://host:4318), "
            f"the SDK appends /v1/{sig.signal}"
        )
    if status == 413:
        return "413 Payload Too Large: a proxy in front of the collector limits body size"
    if status == 415:
        return "415 Unsupported Media Type: this is not an OTLP/HTTP endpoint"
    if status in (502, 503, 504):
        return f"{status}: the collector (or a proxy) is overloaded or down; retry later"
    return f"HTTP {status}: {detail[:200]}"


def _send_http(sig: SignalSettings, body: bytes) -> Outcome:
    import requests

    headers = {"Content-Type": "application/x-protobuf", **sig.export_headers()}
    if sig.compression == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    try:
        resp = requests.post(sig.endpoint.value, data=body, headers=headers, timeout=TIMEOUT_S)
    except requests.exceptions.SSLError as exc:
        return Outcome(
            False,
            f"TLS error talking to {sig.endpoint.value}: {exc}. Is the "
            "endpoint http:// rather than https:// (or the reverse)?",
        )
    except requests.exceptions.ConnectionError as exc:
        if "refused" in str(exc).lower():
            return Outcome(
                False,
                f"connection refused at {sig.endpoint.value}: nothing listens "
                "there; start the collector or `hyperdx local`",
            )
        return Outcome(False, f"cannot connect to {sig.endpoint.value}: {exc}")
    except requests.exceptions.Timeout:
        return Outcome(False, f"no answer from {sig.endpoint.value} within {TIMEOUT_S:.0f} s")
    if resp.status_code == 200:
        return Outcome(True, "accepted (200)")
    return Outcome(False, _explain_status(resp.status_code, sig, resp.text))


def _send_grpc(sig: SignalSettings, body: bytes) -> Outcome:
    try:
        import grpc
    except ImportError:
        return Outcome(False, "grpc protocol needs: pip install 'hyperdx-opentelemetry[grpc]'")
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
    from opentelemetry.proto.collector.metrics.v1 import (
        metrics_service_pb2,
        metrics_service_pb2_grpc,
    )
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    parsed = urllib.parse.urlparse(sig.endpoint.value)
    target = f"{parsed.hostname}:{parsed.port or 4317}"
    channel = (
        grpc.insecure_channel(target)
        if parsed.scheme == "http"
        else grpc.secure_channel(target, grpc.ssl_channel_credentials())
    )
    stubs: dict[str, tuple[Any, Any]] = {
        "traces": (
            trace_service_pb2_grpc.TraceServiceStub,
            trace_service_pb2.ExportTraceServiceRequest,
        ),
        "logs": (logs_service_pb2_grpc.LogsServiceStub, logs_service_pb2.ExportLogsServiceRequest),
        "metrics": (
            metrics_service_pb2_grpc.MetricsServiceStub,
            metrics_service_pb2.ExportMetricsServiceRequest,
        ),
    }
    stub_cls, request_cls = stubs[sig.signal]
    try:
        stub_cls(channel).Export(
            request_cls.FromString(body),
            timeout=TIMEOUT_S,
            metadata=list(sig.export_headers().items()),
        )
        return Outcome(True, "accepted (gRPC OK)")
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return Outcome(False, _explain_status(401, sig, ""))
        if code == grpc.StatusCode.UNAVAILABLE:
            return Outcome(
                False,
                f"gRPC UNAVAILABLE at {target}: nothing listens there, TLS "
                "mismatch, or the collector is down",
            )
        return Outcome(False, f"gRPC {code.name}: {exc.details()}")
    finally:
        channel.close()


def check_endpoint(url: str) -> list[Outcome]:
    """DNS, TCP and (for https) TLS, each as one line."""
    parsed = urllib.parse.urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    out: list[Outcome] = []
    try:
        addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port)})
        out.append(Outcome(True, f"DNS {host} -> {', '.join(addresses)}"))
    except OSError as exc:
        return [Outcome(False, f"DNS lookup of {host!r} failed: {exc}")]
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as sock:
            out.append(
                Outcome(
                    True,
                    f"TCP {host}:{port} connected in {(time.monotonic() - start) * 1000:.0f} ms",
                )
            )
            if parsed.scheme == "https":
                ctx = ssl.create_default_context()
                with ctx.wrap_socket(sock, server_hostname=host) as tls:
                    out.append(Outcome(True, f"TLS {tls.version()} handshake ok"))
    except ssl.SSLError as exc:
        out.append(Outcome(False, f"TLS handshake with {host}:{port} failed: {exc}"))
    except OSError as exc:
        out.append(Outcome(False, f"TCP {host}:{port}: {exc.strerror or exc}"))
    return out


# OpenTelemetry releases SDK 1.X together with contrib 0.(X+21)bN (1.45.1 <-> 0.66b1): each
# contrib package pins the semantic conventions of its own release, so a mixed install fails
# at import time or instruments nothing.
_CONTRIB_OFFSET = 21
_CONTRIB_PREFIX = "opentelemetry-instrumentation"
_VERSION = re.compile(r"^(\d+)\.(\d+)")


@dataclass(frozen=True)
class ReleaseMismatch:
    """Installed contrib packages that do not belong with the installed SDK, and the fix."""

    sdk: str
    expected_contrib: str
    mismatched: dict[str, str]  # distribution name -> installed version

    def lines(self) -> list[str]:
        found = ", ".join(f"{name} {version}" for name, version in sorted(self.mismatched.items()))
        return [
            f"opentelemetry-sdk {self.sdk} belongs with contrib {self.expected_contrib}; "
            f"installed: {found}",
            f"fix: pip install 'opentelemetry-instrumentation=={self.expected_contrib}' && "
            "opentelemetry-bootstrap -a install",
        ]


def _minor(version: str) -> tuple[int, int] | None:
    match = _VERSION.match(version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _matching_contrib(sdk: str, sdk_requires: list[str]) -> str:
    """The contrib version for ``sdk``: the semantic conventions it pins (the same release
    line as its contrib), else 0.(X+21)b0 by the release rule."""
    for req in sdk_requires:
        pin = re.match(r"^opentelemetry-semantic-conventions\s*==\s*([0-9][^;\s]*)", req)
        if pin:
            return pin.group(1)
    minor = _minor(sdk)
    return f"0.{minor[1] + _CONTRIB_OFFSET}b0" if minor else "?"


def release_mismatch(
    versions: Mapping[str, str], sdk_requires: list[str] | None = None
) -> ReleaseMismatch | None:
    """Compare ``versions`` (distribution name -> installed version) against the SDK's
    release line; None when every contrib package belongs with it (or no SDK is there)."""
    sdk = versions.get("opentelemetry-sdk")
    sdk_minor = _minor(sdk) if sdk else None
    if sdk is None or sdk_minor is None:
        return None
    expected = _matching_contrib(sdk, sdk_requires or [])
    wanted = (0, sdk_minor[1] + _CONTRIB_OFFSET)
    wrong = {
        name: version
        for name, version in versions.items()
        if name.startswith(_CONTRIB_PREFIX) and _minor(version) != wanted
    }
    return ReleaseMismatch(sdk, expected, wrong) if wrong else None


def installed_release_mismatch() -> ReleaseMismatch | None:
    """:func:`release_mismatch` over this environment's installed distributions."""
    versions: dict[str, str] = {}
    for dist in metadata.distributions():
        name = re.sub(r"[-_.]+", "-", (dist.metadata["Name"] or "").lower())
        if name.startswith("opentelemetry-"):
            versions.setdefault(name, dist.version)  # the first on sys.path is imported
    try:
        requires = metadata.requires("opentelemetry-sdk") or []
    except metadata.PackageNotFoundError:
        requires = []
    return release_mismatch(versions, requires)


def run_doctor(echo: Callable[[str], None]) -> bool:
    """Print the report; True when all three signals were accepted."""
    try:
        settings = resolve()
    except ConfigurationError as exc:
        echo(f"configuration error: {exc}")
        return False
    echo("Configuration (code > environment > default; secrets masked)")
    for name, shown, source, variable in settings.rows():
        echo(f"  {name:<28} {shown or '-':<48} {source:<11} {variable}")
    for warning in settings.warnings:
        echo(f"  warning: {_mask(warning, settings)}")
    mismatch = installed_release_mismatch()
    if mismatch is not None:
        echo("OpenTelemetry packages from different releases (instrumentation may fail)")
        for line in mismatch.lines():
            echo(f"  warning: {line}")
    endpoints = sorted({settings.signal(s).endpoint.value for s in ("traces", "logs", "metrics")})
    for url in endpoints:
        echo(f"Endpoint {url}")
        for outcome in check_endpoint(url):
            echo(f"  {'ok  ' if outcome.ok else 'FAIL'} {outcome.line}")
    echo("Round trip (one span, one log record, one metric)")
    payloads = _payloads(settings)
    all_ok = True
    for signal in ("traces", "logs", "metrics"):
        sig = settings.signal(signal)
        if not sig.enabled.value:
            echo(f"  skip {signal:<8} disabled by {sig.enabled.variable}")
            continue
        send = _send_grpc if sig.protocol.value == "grpc" else _send_http
        outcome = send(sig, payloads[signal])
        all_ok &= outcome.ok
        echo(f"  {'ok  ' if outcome.ok else 'FAIL'} {signal:<8} {_mask(outcome.line, settings)}")
    return all_ok


@click.command()
def doctor() -> None:
    """Check the SDK's configuration and connectivity with a real test span, log and metric."""
    ok = run_doctor(click.echo)
    raise SystemExit(0 if ok else 1)
