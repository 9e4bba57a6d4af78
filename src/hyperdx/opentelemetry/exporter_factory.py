"""OTLP exporter factory per signal and protocol.

gRPC is an optional extra: it is imported only when a signal asks for it, and its absence is a
ConfigurationError that says which package to install (0.4.0 imported grpc eagerly).
"""

from __future__ import annotations

import importlib
from typing import Any

from hyperdx.opentelemetry.options import ConfigurationError, SignalSettings

_HTTP = {
    # The stock OTLP/HTTP exporters with a byte-level encoder (identical bytes), see export/.
    "traces": ("hyperdx.opentelemetry.export.exporters", "HyperDXSpanExporter"),
    "logs": ("hyperdx.opentelemetry.export.exporters", "HyperDXLogExporter"),
    "metrics": ("opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
}
_GRPC = {
    "traces": ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    "logs": ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "OTLPLogExporter"),
    "metrics": ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "OTLPMetricExporter"),
}


def _exporter_class(settings: SignalSettings) -> Any:
    table = _GRPC if settings.protocol.value == "grpc" else _HTTP
    module_name, class_name = table[settings.signal]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if settings.protocol.value == "grpc":
            raise ConfigurationError(
                f"{settings.protocol.variable or 'exporter_protocol'}='grpc' needs the gRPC "
                "extra: pip install 'hyperdx-opentelemetry[grpc]'"
            ) from exc
        raise
    return getattr(module, class_name)


def create_exporter(settings: SignalSettings, **extra: Any) -> Any:
    """Build the OTLP exporter for one signal; `extra` carries signal-specific arguments."""
    cls = _exporter_class(settings)
    kwargs: dict[str, Any] = {
        "endpoint": settings.endpoint.value,
        "headers": settings.export_headers(),
        **extra,
    }
    if settings.compression:
        if settings.protocol.value == "grpc":
            import grpc

            kwargs["compression"] = grpc.Compression.Gzip
        else:
            from opentelemetry.exporter.otlp.proto.http import Compression

            kwargs["compression"] = Compression.Gzip
    if settings.protocol.value == "grpc":
        kwargs["insecure"] = settings.endpoint.value.startswith("http://")
    return cls(**kwargs)
