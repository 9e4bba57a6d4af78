"""Per app (or per middleware) state, made once: tracer, instruments, header capture, mode."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import get_meter

from hyperdx.opentelemetry.server import semconv


def contrib_version(package: str) -> str:
    """The version contrib's scope would carry (our spans keep contrib's scope identity)."""
    try:
        return metadata.version(f"opentelemetry-instrumentation-{package}")
    except metadata.PackageNotFoundError:
        return "0.66b1"


class ServerTelemetry:
    """Everything a request needs that does not depend on the request."""

    def __init__(
        self,
        scope: str,
        package: str,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        *,
        active_unit: str = "{request}",
        active_description: str = semconv.ACTIVE_DESCRIPTION,
        headers: semconv.HeaderCapture | None = None,
    ) -> None:
        self.mode = mode = semconv.current_mode()
        version = contrib_version(package)
        self.tracer = trace.get_tracer(scope, version, tracer_provider, schema_url=mode.schema_url)
        self.meter = get_meter(scope, version, meter_provider, schema_url=mode.schema_url)
        self.duration_old, self.duration_new = semconv.duration_instruments(self.meter, mode)
        self.active = semconv.active_counter(self.meter, active_unit, active_description)
        self.headers = headers or semconv.HeaderCapture()

    def record(
        self,
        seconds: float,
        attrs: dict[str, Any],
        span: trace.Span,
        old_extra: dict[str, Any] | None = None,
        new_extra: dict[str, Any] | None = None,
    ) -> None:
        """The duration histograms, with the span as the exemplar context."""
        semconv.record_duration(
            self.duration_old,
            self.duration_new,
            seconds,
            attrs,
            trace.set_span_in_context(span),
            old_extra,
            new_extra,
        )
