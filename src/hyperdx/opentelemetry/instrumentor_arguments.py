"""What each instrumentor gets besides the agent's own arguments (one place for that rule).

The logging instrumentation only keeps its record-factory part (our handler is the one OTLP
handler on root), and HTTP instrumentors get the network-capture hooks when capture is on.
The user's hooks run first, then ours (see capture.merge_kwargs).
"""

from __future__ import annotations

from typing import Any

from hyperdx.opentelemetry import diagnostics, lifecycle
from hyperdx.opentelemetry.options import Settings


def capture_config(settings: Settings) -> Any:
    """The network-capture settings, derived from the one settings object."""
    from hyperdx.opentelemetry.capture.config import CaptureConfig

    return CaptureConfig(
        enabled=settings.capture_enabled.value,
        max_body_bytes=settings.capture_body_max_bytes.value,
        redact=settings.capture_redact.value,
        extra_patterns=settings.capture_redact_patterns.value,
        excluded_endpoints=tuple(
            settings.signal(s).endpoint.value for s in ("traces", "logs", "metrics")
        ),
    )


def for_instrumentor(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` (from the agent or the user) plus ours for the entry point called `name`."""
    kwargs = dict(kwargs)
    if name == "logging":
        kwargs.setdefault("enable_log_auto_instrumentation", False)
    ours = _capture_kwargs(name)
    if ours:
        from hyperdx.opentelemetry.capture import merge_kwargs

        kwargs = merge_kwargs(kwargs, ours)
    return kwargs


def _capture_kwargs(name: str) -> dict[str, Any]:
    pipeline = lifecycle.current()
    if pipeline is None or not pipeline.settings.capture_enabled.value:
        return {}
    try:
        from hyperdx.opentelemetry import capture

        return dict(capture.instrumentor_kwargs(name, capture_config(pipeline.settings)))
    except Exception as exc:  # noqa: BLE001 - capture must never stop instrumentation
        diagnostics.error("network capture unavailable for %s: %s", name, exc)
        return {}
