"""Entry points that `opentelemetry-instrument` loads: our distro and our configurator.

Both are registered under the name `hyperdx` (0.4.0 used `distro`, the same name as
opentelemetry-distro, so which one loaded depended on install order), so OTEL_PYTHON_DISTRO
and OTEL_PYTHON_CONFIGURATOR can select us.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _BaseConfigurator

from hyperdx.opentelemetry import instrumentation


class HyperDXDistro(BaseDistro):
    """Sets the agent's defaults; instrumentors start when their library is imported."""

    def _configure(self, **kwargs: Any) -> None:
        # The logging instrumentation would add a second OTLP handler on root (duplicate
        # logs); ours is the one handler, so it only keeps its record-factory part.
        os.environ.setdefault("OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION", "false")
        for signal in ("TRACES", "METRICS", "LOGS"):
            os.environ.setdefault(f"OTEL_{signal}_EXPORTER", "otlp")

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        # Deferred until the app imports the library (see instrumentation.load).
        instrumentation.load(entry_point, **kwargs)


class HyperDXConfigurator(_BaseConfigurator):
    """Runs configure_opentelemetry() from the environment when the agent starts."""

    def _configure(self, **kwargs: Any) -> None:
        from hyperdx.opentelemetry.configuration import configure_opentelemetry

        instrumentation.mark_agent_loading()
        configure_opentelemetry()


def post_instrument() -> None:
    """After the agent loaded instrumentors: make sure exactly one OTLP log handler remains."""
    from hyperdx.opentelemetry import lifecycle, logs

    pipeline = lifecycle.current()
    if pipeline is not None and logs.current_handler() is not None:
        logs.attach_handler(pipeline.logger_provider, pipeline.settings.log_level.value)
