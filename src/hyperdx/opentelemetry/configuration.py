"""`configure_opentelemetry()`: options -> one Resource -> three providers -> exporters.

Never raises into the app: a configuration error prints one clear message naming the
variable and value and leaves telemetry off, so a typo cannot crash a worker boot loop.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from hyperdx.opentelemetry import (
    diagnostics,
    gc_freeze,
    import_hook,
    instrumentation,
    integrations,
    lifecycle,
    logs,
)
from hyperdx.opentelemetry.exporter_factory import create_exporter
from hyperdx.opentelemetry.instrumentor_arguments import capture_config
from hyperdx.opentelemetry.metrics import build_meter_provider, exporter_arguments
from hyperdx.opentelemetry.options import ConfigurationError, HyperDXOptions, Settings, resolve
from hyperdx.opentelemetry.resource import build_resource
from hyperdx.opentelemetry.traces import build_tracer_provider

_lock = threading.Lock()


def configure_opentelemetry(
    options: HyperDXOptions | None = None, **kwargs: Any
) -> lifecycle.Pipeline | None:
    """Configure traces, logs and metrics for this process; safe to call more than once.

    Keyword arguments are HyperDXOptions fields (`configure_opentelemetry(service_name="x")`).
    Returns the pipeline, or None when telemetry is disabled or misconfigured.
    """
    diagnostics.install()
    with _lock:
        existing = lifecycle.current()
        if existing is not None:
            # Idempotent: same pipeline; re-assert the single log handler in case something
            # (an explicit LoggingInstrumentor, a dictConfig) added or removed one since.
            logs.attach_handler(existing.logger_provider, existing.settings.log_level.value)
            _activate_instrumentation(existing.settings)
            return existing
        try:
            if kwargs:
                options = HyperDXOptions(**{**(vars(options) if options else {}), **kwargs})
            settings = resolve(options)
        except (ConfigurationError, TypeError) as exc:
            diagnostics.error("telemetry is OFF: %s", exc)
            return None
        for warning in settings.warnings:
            diagnostics.warn("%s", warning)
        if settings.sdk_disabled.value:
            return None
        try:
            pipeline = _build(settings)
        except ConfigurationError as exc:
            diagnostics.error("telemetry is OFF: %s", exc)
            return None
        except Exception as exc:  # noqa: BLE001 - a bug of ours must not stop the app
            diagnostics.error("telemetry is OFF: could not build the pipeline: %r", exc)
            return None
        lifecycle.install(pipeline)
        logs.attach_handler(pipeline.logger_provider, settings.log_level.value)
        # loguru costs ~30 ms to import: our sink is added when (if) the app imports it.
        level = settings.log_level.value
        import_hook.when_imported(["loguru"], lambda: integrations.install_loguru(level))
        _register_fork_handling(pipeline)
        _install_capture(settings)
    _activate_instrumentation(settings)
    if settings.gc_freeze.value:
        gc_freeze.freeze_startup_objects()
    return pipeline


def _exporter(settings: Settings, signal: str, **extra: Any) -> Any | None:
    sig = settings.signal(signal)
    return create_exporter(sig, **extra) if sig.enabled.value else None


def _build(settings: Settings) -> lifecycle.Pipeline:
    resource = build_resource(settings)
    tracer_provider = build_tracer_provider(settings, resource, _exporter(settings, "traces"))
    logger_provider = logs.build_logger_provider(settings, resource, _exporter(settings, "logs"))
    meter_provider = build_meter_provider(
        settings, resource, _exporter(settings, "metrics", **exporter_arguments())
    )
    if settings.debug.value:
        _add_console(tracer_provider, logger_provider)
    return lifecycle.Pipeline(settings, resource, tracer_provider, logger_provider, meter_provider)


def _add_console(tracer_provider: Any, logger_provider: Any) -> None:
    """DEBUG=true: the readable console view, behind batch processors (off the request path)."""
    from hyperdx.opentelemetry.console import ConsoleLogExporter, ConsoleSpanExporter

    tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(ConsoleLogExporter()))


def _register_fork_handling(pipeline: lifecycle.Pipeline) -> None:
    try:
        from hyperdx.opentelemetry import forking
    except ImportError:
        return
    forking.register(pipeline)


def _install_capture(settings: Settings) -> None:
    if not settings.capture_enabled.value:
        return
    try:
        from hyperdx.opentelemetry import capture

        capture.install(capture_config(settings))
    except Exception as exc:  # noqa: BLE001 - capture problems must never reach the app
        diagnostics.error("network capture could not be installed: %s", exc)


def _activate_instrumentation(settings: Settings) -> None:
    if settings.instrument.value and instrumentation.activate():
        # Apps created before this call (gunicorn --preload, uWSGI without lazy-apps,
        # `app = Flask(...)` above configure_opentelemetry()) missed the class patch.
        from hyperdx.opentelemetry import forking

        try:
            forking.instrument_preloaded_apps()
        except Exception as exc:  # noqa: BLE001 - must not break the app; reported once
            diagnostics.error("could not instrument apps created before configure: %r", exc)
