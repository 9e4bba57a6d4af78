"""The logger provider and the ONE OTLP handler on the root logger.

Rules (S9, and 0.4.0's bugs avoided):
- exactly one OTLP handler on root, whatever combination of `opentelemetry-instrument`,
  `opentelemetry-instrumentation-logging` and repeated `configure_opentelemetry()` calls;
- the app's logging stays the app's: we never set the root level, never call basicConfig, and
  the app's later basicConfig/dictConfig/fileConfig still work (our handler steps aside during
  the call and comes back after it, so basicConfig is not turned into a no-op by our presence);
- handler level NOTSET, so the app's logger levels decide; HYPERDX_LOG_LEVEL raises it;
- the SDK's own records and anything logged on the export path are never exported;
- a record that would have reached Python's last-resort stderr handler still does.
"""

from __future__ import annotations

import functools
import logging
import logging.config
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_value
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource

from hyperdx.opentelemetry import drops, structlog_records
from hyperdx.opentelemetry.export import HyperDXBatchLogRecordProcessor
from hyperdx.opentelemetry.hygiene import LogHygieneProcessor, redactor_for
from hyperdx.opentelemetry.log_handlers import is_otlp_handler
from hyperdx.opentelemetry.options import Settings

_SDK_PREFIXES = ("opentelemetry", "hyperdx.opentelemetry")


class HyperDXLoggingHandler(LoggingHandler):
    """OTLP handler that never exports the SDK's own records or export-path chatter."""

    def emit(self, record: logging.LogRecord) -> None:
        if not (record.name.startswith(_SDK_PREFIXES) or get_value(_SUPPRESS_INSTRUMENTATION_KEY)):
            try:
                super().emit(structlog_records.flatten(record))
            except Exception:  # noqa: BLE001 - never let telemetry break the app's logging call
                drops.record("logs", 1, "could not convert a log record")
        _last_resort(record)

    def flush(self) -> None:
        """No-op: `logging.shutdown()` calls this at exit and the SDK's version starts a
        non-daemon thread that can hold the process for the exporter's retries; the exit
        flush is lifecycle.shutdown(), under one deadline."""


def _last_resort(record: logging.LogRecord) -> None:
    """Keep Python's behaviour for apps with no handlers: WARNING+ still reaches stderr."""
    last = logging.lastResort
    if last is None or record.levelno < last.level:
        return
    current: logging.Logger | None = logging.getLogger(record.name)
    while current is not None:
        for handler in current.handlers:
            if not is_otlp_handler(handler):
                return
        current = current.parent if current.propagate else None
    last.handle(record)


def build_logger_provider(
    settings: Settings, resource: Resource, exporter: Any | None
) -> LoggerProvider:
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    if settings.capture_redact.value:
        provider.add_log_record_processor(LogHygieneProcessor(redactor_for(settings)))
    if exporter is not None:
        provider.add_log_record_processor(HyperDXBatchLogRecordProcessor(exporter))
    return provider


_lock = threading.RLock()
_handler: HyperDXLoggingHandler | None = None


def attach_handler(provider: LoggerProvider, level: int) -> HyperDXLoggingHandler:
    """Install (or re-point) the single root handler and remove any other OTLP handler."""
    global _handler
    with _lock:
        root = logging.getLogger()
        if _handler is None:
            _handler = HyperDXLoggingHandler(level=level, logger_provider=provider)
        else:
            _handler._logger_provider = provider
            _handler.setLevel(level)
        for handler in list(root.handlers):
            if is_otlp_handler(handler) and handler is not _handler:
                root.removeHandler(handler)
        if _handler not in root.handlers:
            root.addHandler(_handler)
        _guard_config_functions()
        _adopt_instrumentation_handler()
        return _handler


def detach_handler() -> None:
    with _lock:
        if _handler is not None:
            logging.getLogger().removeHandler(_handler)


def current_handler() -> HyperDXLoggingHandler | None:
    return _handler


_adopted = False


def _adopt_instrumentation_handler() -> None:
    """Make opentelemetry-instrumentation-logging reuse our handler instead of adding one.

    Its `instrument()` (run by the agent, or by an app explicitly) installs a second root
    handler by default since 0.61b0, which exports every record twice.
    """
    global _adopted
    if _adopted:
        return
    _adopted = True
    import opentelemetry.instrumentation.logging as instrumentation_logging

    def reuse_ours(*args: Any, **kwargs: Any) -> LoggingHandler:
        handler = _handler
        assert handler is not None  # only patched after our handler exists
        return handler

    instrumentation_logging._setup_logging_handler = reuse_ours


_guarded = False


def _guard_config_functions() -> None:
    """Make basicConfig/dictConfig/fileConfig keep our handler (and work as if it weren't there)."""
    global _guarded
    if _guarded:
        return
    _guarded = True
    logging.basicConfig = _step_aside(logging.basicConfig)
    logging.config.dictConfig = _step_aside(logging.config.dictConfig)
    logging.config.fileConfig = _step_aside(logging.config.fileConfig)


def _step_aside(config_fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(config_fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        root = logging.getLogger()
        with _lock:
            ours = _handler if _handler in root.handlers else None
            if ours is not None:
                root.removeHandler(ours)
            try:
                return config_fn(*args, **kwargs)
            finally:
                if ours is not None and ours not in root.handlers:
                    root.addHandler(ours)
                for handler in list(root.handlers):
                    if is_otlp_handler(handler) and handler is not ours and ours is not None:
                        root.removeHandler(handler)

    return wrapper
