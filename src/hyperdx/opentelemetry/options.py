"""One settings object: code > environment > default, and every value knows where it came from.

`HyperDXOptions` is what users pass in code (keyword names kept from hyperdx-opentelemetry 0.4.0
so its users can switch). `resolve()` merges it with the environment into `Settings`, parsing
strictly: a bad boolean or number is a warning naming the variable and value (default kept); a
bad endpoint or protocol is a `ConfigurationError`, because sending telemetry somewhere the user
did not mean is worse than sending none.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Source = Literal["code", "environment", "default"]
SIGNALS = ("traces", "logs", "metrics")
PROTOCOLS = ("http/protobuf", "grpc")
DEFAULT_ENDPOINT = "http://localhost:4318"
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
DEFAULT_SERVICE_NAME = "unknown_service:python"
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
DEFAULT_METRIC_INTERVAL_MS = 60_000
DEFAULT_CAPTURE_BODY_MAX_BYTES = 4096
SERVER_MODES = ("lean", "contrib")
SECRET_PLACEHOLDER = "********"
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}


class ConfigurationError(ValueError):
    """A setting that cannot be used; the message names the variable and the bad value."""


@dataclass(frozen=True)
class Setting(Generic[T]):
    """A resolved value with its origin (shown by `hyperdx doctor`)."""

    value: T
    source: Source
    variable: str = ""
    secret: bool = False

    def shown(self) -> str:
        """The value as it may be printed: secrets masked, never echoed."""
        if self.secret and self.value:
            return SECRET_PLACEHOLDER
        return "" if self.value is None else str(self.value)


@dataclass(kw_only=True)
class HyperDXOptions:
    """Settings given in code; anything left as None comes from the environment or a default."""

    apikey: str | None = None
    traces_apikey: str | None = None
    metrics_apikey: str | None = None
    logs_apikey: str | None = None
    service_name: str | None = None
    service_version: str | None = None
    endpoint: str | None = None
    traces_endpoint: str | None = None
    metrics_endpoint: str | None = None
    logs_endpoint: str | None = None
    exporter_protocol: str | None = None
    traces_exporter_protocol: str | None = None
    metrics_exporter_protocol: str | None = None
    logs_exporter_protocol: str | None = None
    debug: bool | None = None
    log_level: str | None = None
    sample_rate: int | None = None
    enable_advanced_network_capture: bool | None = None
    capture_body_max_bytes: int | None = None
    capture_redact: bool | None = None
    capture_redact_patterns: tuple[str, ...] | None = None
    shutdown_timeout: float | None = None
    metric_export_interval_ms: int | None = None
    resource_attributes: Mapping[str, str] | None = None
    instrument: bool | None = None
    server_instrumentation: str | None = None
    gc_freeze: bool | None = None


@dataclass(frozen=True)
class SignalSettings:
    """Where and how one signal is exported."""

    signal: str
    enabled: Setting[bool]
    endpoint: Setting[str]
    protocol: Setting[str]
    apikey: Setting[str | None]
    headers: Mapping[str, str]
    compression: str | None

    def export_headers(self) -> dict[str, str]:
        """Headers for the exporter: the user's OTLP headers plus `authorization: <key>`.

        No key means no authorization header at all (never `None` or empty).
        """
        merged = dict(self.headers)
        if self.apikey.value:
            merged = {k: v for k, v in merged.items() if k.lower() != "authorization"}
            merged["authorization"] = self.apikey.value
        return merged


@dataclass(frozen=True)
class Settings:
    """Everything `configure_opentelemetry()` needs, resolved once."""

    sdk_disabled: Setting[bool]
    service_name: Setting[str]
    service_version: Setting[str | None]
    debug: Setting[bool]
    log_level: Setting[int]
    sample_rate: Setting[int | None]
    shutdown_timeout: Setting[float]
    metric_export_interval_ms: Setting[int]
    instrument: Setting[bool]
    server_instrumentation: Setting[str]
    gc_freeze: Setting[bool]
    capture_enabled: Setting[bool]
    capture_body_max_bytes: Setting[int]
    capture_redact: Setting[bool]
    capture_redact_patterns: Setting[tuple[str, ...]]
    resource_attributes: Mapping[str, str]
    traces: SignalSettings
    logs: SignalSettings
    metrics: SignalSettings
    warnings: tuple[str, ...] = field(default=())

    def signal(self, name: str) -> SignalSettings:
        return {"traces": self.traces, "logs": self.logs, "metrics": self.metrics}[name]

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(name, shown value, source, variable) for every setting; secrets masked."""
        out: list[tuple[str, str, str, str]] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Setting):
                out.append((f.name, value.shown(), value.source, value.variable))
        for sig in (self.traces, self.logs, self.metrics):
            for part in ("enabled", "endpoint", "protocol", "apikey"):
                s: Setting[object] = getattr(sig, part)
                out.append((f"{sig.signal}.{part}", s.shown(), s.source, s.variable))
        return out


class _Resolver:
    """Reads one environment mapping and collects warnings while resolving."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.warnings: list[str] = []

    def raw(self, *names: str) -> tuple[str, str] | None:
        for name in names:
            value = self.env.get(name)
            if value is not None and value.strip() != "":
                return name, value.strip()
        return None

    def string(
        self, code: str | None, names: tuple[str, ...], default: T, *, secret: bool = False
    ) -> Setting[str | T]:
        if code is not None:
            return Setting(code, "code", names[0] if names else "", secret)
        found = self.raw(*names)
        if found:
            return Setting(found[1], "environment", found[0], secret)
        return Setting(default, "default", names[0] if names else "", secret)

    def boolean(self, code: bool | None, names: tuple[str, ...], default: bool) -> Setting[bool]:
        if code is not None:
            return Setting(bool(code), "code", names[0])
        found = self.raw(*names)
        if found:
            name, value = found
            if value.lower() in _TRUE:
                return Setting(True, "environment", name)
            if value.lower() in _FALSE:
                return Setting(False, "environment", name)
            self.warnings.append(
                f"{name}={value!r} is not a boolean (use true/false, 1/0, yes/no, on/off); "
                f"keeping the default {str(default).lower()}"
            )
        return Setting(default, "default", names[0])

    def number(
        self, code: float | None, name: str, default: T, kind: type, minimum: float
    ) -> Setting[T]:
        if code is not None:
            if code < minimum:
                raise ConfigurationError(f"{name} (in code) must be >= {minimum}, got {code!r}")
            return Setting(kind(code), "code", name)
        found = self.raw(name)
        if found:
            try:
                value = kind(found[1])
                if value < minimum:
                    raise ValueError
                return Setting(value, "environment", name)
            except ValueError:
                self.warnings.append(
                    f"{name}={found[1]!r} is not a valid number >= {minimum}; "
                    f"keeping the default {default}"
                )
        return Setting(default, "default", name)


def parse_headers(value: str, variable: str) -> dict[str, str]:
    """Parse `k1=v1,k2=v2` (URL-encoded, as OTEL_EXPORTER_OTLP_HEADERS is specified)."""
    headers: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(
                f"{variable} has an entry without 'name=value': {key.strip()!r}"
            )
        headers[urllib.parse.unquote(key.strip()).lower()] = urllib.parse.unquote(val.strip())
    return headers


def validate_url(url: str, variable: str) -> str:
    """Reject a malformed endpoint once, at start-up, naming the variable and the value."""
    parsed = urllib.parse.urlparse(url)
    ok = parsed.scheme in ("http", "https") and bool(parsed.hostname)
    if ok:
        try:
            parsed.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            ok = False
    if not ok or re.search(r"\s", url):
        raise ConfigurationError(
            f"{variable}={url!r} is not a valid endpoint URL "
            "(expected http://host:port or https://host:port)"
        )
    return url


def _signal(r: _Resolver, o: HyperDXOptions, signal: str) -> SignalSettings:
    up = signal.upper()
    exporter = r.raw(f"OTEL_{up}_EXPORTER")
    enabled = Setting(True, "default", f"OTEL_{up}_EXPORTER")
    if exporter:
        names = {n.strip().lower() for n in exporter[1].split(",")}
        enabled = Setting(names != {"none"}, "environment", exporter[0])

    protocol = r.string(
        getattr(o, f"{signal}_exporter_protocol") or o.exporter_protocol,
        (f"OTEL_EXPORTER_OTLP_{up}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        "http/protobuf",
    )
    if protocol.value not in PROTOCOLS:
        hint = (
            " (the OpenTelemetry Python exporters cannot send OTLP/JSON)"
            if protocol.value == "http/json"
            else ""
        )
        raise ConfigurationError(
            f"{protocol.variable}={protocol.value!r} is not a supported protocol{hint}; "
            "use 'http/protobuf' (default) or 'grpc'"
        )

    grpc = protocol.value == "grpc"
    own = getattr(o, f"{signal}_endpoint")
    per_signal_var = f"OTEL_EXPORTER_OTLP_{up}_ENDPOINT"
    endpoint: Setting[str]
    if own:
        endpoint = Setting(validate_url(own, f"{signal}_endpoint"), "code", per_signal_var)
    elif found := r.raw(per_signal_var):
        endpoint = Setting(validate_url(found[1], found[0]), "environment", found[0])
    else:
        base = r.string(
            o.endpoint,
            ("OTEL_EXPORTER_OTLP_ENDPOINT",),
            DEFAULT_GRPC_ENDPOINT if grpc else DEFAULT_ENDPOINT,
        )
        url = validate_url(base.value, "endpoint" if base.source == "code" else base.variable)
        if not grpc:
            url = url.rstrip("/") + f"/v1/{signal}"
        endpoint = Setting(url, base.source, base.variable)

    apikey = r.string(
        getattr(o, f"{signal}_apikey") or o.apikey,
        (f"HYPERDX_{up}_APIKEY", "HYPERDX_API_KEY"),
        None,
        secret=True,
    )
    headers: dict[str, str] = {}
    for var in ("OTEL_EXPORTER_OTLP_HEADERS", f"OTEL_EXPORTER_OTLP_{up}_HEADERS"):
        if found := r.raw(var):
            headers.update(parse_headers(found[1], var))

    compression: str | None = None
    if not r.raw(f"OTEL_EXPORTER_OTLP_{up}_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"):
        compression = "gzip"
    return SignalSettings(signal, enabled, endpoint, protocol, apikey, headers, compression)


def _service_name(r: _Resolver, o: HyperDXOptions) -> Setting[str]:
    if o.service_name:
        return Setting(o.service_name, "code", "OTEL_SERVICE_NAME")
    if found := r.raw("OTEL_SERVICE_NAME"):
        return Setting(found[1], "environment", found[0])
    for item in r.env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = item.partition("=")
        if key.strip() == "service.name" and value.strip():
            name = urllib.parse.unquote(value.strip())
            return Setting(name, "environment", "OTEL_RESOURCE_ATTRIBUTES")
    r.warnings.append(
        "no service name: set OTEL_SERVICE_NAME so your telemetry is findable in HyperDX; "
        f"using {DEFAULT_SERVICE_NAME!r}"
    )
    return Setting(DEFAULT_SERVICE_NAME, "default", "OTEL_SERVICE_NAME")


def _log_level(r: _Resolver, o: HyperDXOptions) -> Setting[int]:
    code = o.log_level
    found = None if code is not None else r.raw("HYPERDX_LOG_LEVEL")
    text = code if code is not None else (found[1] if found else None)
    if text is None:
        return Setting(0, "default", "HYPERDX_LOG_LEVEL")
    level = _LOG_LEVELS.get(text.strip().lower())
    if level is None:
        r.warnings.append(
            f"HYPERDX_LOG_LEVEL={text!r} is not one of debug, info, warning, error, critical; "
            "keeping the default (NOTSET: your loggers' levels decide)"
        )
        return Setting(0, "default", "HYPERDX_LOG_LEVEL")
    return Setting(level, "code" if code is not None else "environment", "HYPERDX_LOG_LEVEL")


def _server_instrumentation(r: _Resolver, o: HyperDXOptions) -> Setting[str]:
    """Which server request path instruments WSGI/ASGI apps: ours ("lean") or contrib's."""
    name = "HYPERDX_SERVER_INSTRUMENTATION"
    setting = r.string(o.server_instrumentation, (name,), "lean")
    value = str(setting.value).strip().lower()
    if value in SERVER_MODES:
        return Setting(value, setting.source, name)
    r.warnings.append(
        f"{name}={setting.value!r} is not one of {', '.join(SERVER_MODES)}; "
        "keeping the default lean"
    )
    return Setting("lean", "default", name)


def server_instrumentation(env: Mapping[str, str] | None = None) -> tuple[str, tuple[str, ...]]:
    """The server mode from the environment alone, with any warning (read before configure)."""
    r = _Resolver(os.environ if env is None else env)
    return str(_server_instrumentation(r, HyperDXOptions()).value), tuple(r.warnings)


def _patterns(r: _Resolver, o: HyperDXOptions) -> Setting[tuple[str, ...]]:
    name = "HYPERDX_CAPTURE_REDACT_PATTERNS"
    if o.capture_redact_patterns is not None:
        return Setting(tuple(o.capture_redact_patterns), "code", name)
    if found := r.raw(name):
        items = tuple(p.strip() for p in found[1].split(",") if p.strip())
        for pattern in items:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigurationError(
                    f"{name} has an invalid pattern {pattern!r}: {exc}"
                ) from exc
        return Setting(items, "environment", name)
    return Setting((), "default", name)


def resolve(
    options: HyperDXOptions | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Resolve code options against the environment; raises ConfigurationError on unusable input."""
    o = options or HyperDXOptions()
    r = _Resolver(os.environ if env is None else env)
    signals = {s: _signal(r, o, s) for s in SIGNALS}
    if not any(s.apikey.value for s in signals.values()):
        r.warnings.append(
            "no API key: set HYPERDX_API_KEY to your ClickStack ingestion key "
            "(sent as the 'authorization' header); sending without one"
        )
    debug = r.boolean(o.debug, ("HYPERDX_DEBUG", "DEBUG"), False)
    sample_rate: Setting[int | None] = r.number(
        float(o.sample_rate) if o.sample_rate is not None else None,
        "HYPERDX_SAMPLE_RATE",
        None,
        int,
        1,
    )
    return Settings(
        sdk_disabled=r.boolean(None, ("OTEL_SDK_DISABLED",), False),
        service_name=_service_name(r, o),
        service_version=r.string(o.service_version, ("OTEL_SERVICE_VERSION",), None),
        debug=debug,
        log_level=_log_level(r, o),
        sample_rate=sample_rate,
        shutdown_timeout=r.number(
            o.shutdown_timeout, "HYPERDX_SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT, float, 0.1
        ),
        metric_export_interval_ms=r.number(
            float(o.metric_export_interval_ms) if o.metric_export_interval_ms is not None else None,
            "OTEL_METRIC_EXPORT_INTERVAL",
            DEFAULT_METRIC_INTERVAL_MS,
            int,
            100,
        ),
        instrument=r.boolean(o.instrument, ("HYPERDX_AUTO_INSTRUMENT",), True),
        server_instrumentation=_server_instrumentation(r, o),
        gc_freeze=r.boolean(o.gc_freeze, ("HYPERDX_GC_FREEZE",), True),
        capture_enabled=r.boolean(
            o.enable_advanced_network_capture, ("HYPERDX_ENABLE_ADVANCED_NETWORK_CAPTURE",), False
        ),
        capture_body_max_bytes=r.number(
            float(o.capture_body_max_bytes) if o.capture_body_max_bytes is not None else None,
            "HYPERDX_CAPTURE_BODY_MAX_BYTES",
            DEFAULT_CAPTURE_BODY_MAX_BYTES,
            int,
            0,
        ),
        capture_redact=r.boolean(o.capture_redact, ("HYPERDX_CAPTURE_REDACT",), True),
        capture_redact_patterns=_patterns(r, o),
        resource_attributes=dict(o.resource_attributes or {}),
        traces=signals["traces"],
        logs=signals["logs"],
        metrics=signals["metrics"],
        warnings=tuple(r.warnings),
    )
