"""ClickStack's OpenTelemetry distribution for Python: logs, metrics and traces, one install."""

from hyperdx.opentelemetry.configuration import configure_opentelemetry
from hyperdx.opentelemetry.lifecycle import force_flush, shutdown
from hyperdx.opentelemetry.options import ConfigurationError, HyperDXOptions
from hyperdx.opentelemetry.version import __version__

__all__ = [
    "ConfigurationError",
    "HyperDXOptions",
    "__version__",
    "configure_opentelemetry",
    "force_flush",
    "shutdown",
]
