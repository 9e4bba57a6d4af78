"""Logging libraries besides stdlib logging (B8): loguru and structlog.

Both feed the same single OTLP handler, so records get the same resource, the trace and span
ids of the current span, and the same self-export protection as stdlib records.

- loguru has no logger hierarchy whose level could decide, so when loguru is installed we add
  one sink at INFO (or HYPERDX_LOG_LEVEL). The app's own loguru sinks are untouched.
- structlog configured over stdlib logging (`structlog.stdlib.LoggerFactory()`) needs nothing.
  With structlog's own loggers, add `hyperdx.opentelemetry.integrations.structlog_processor`
  to the processor chain (before the renderer); over stdlib loggers it stands aside, so one
  chain can serve both without exporting an event twice (see ``structlog_records``).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import MutableMapping
from typing import Any

from hyperdx.opentelemetry import logs, structlog_records

_lock = threading.Lock()
_loguru_sink_id: int | None = None
LOGURU_DEFAULT_LEVEL = "INFO"


def _emit(record: logging.LogRecord) -> None:
    handler = logs.current_handler()
    if handler is not None and record.levelno >= handler.level:
        handler.handle(record)


def _loguru_sink(message: Any) -> None:
    rec = message.record
    exc = rec["exception"]
    exc_info = (exc.type, exc.value, exc.traceback) if exc is not None and exc.type else None
    record = logging.LogRecord(
        name=rec["name"] or "loguru",
        level=rec["level"].no,
        pathname=rec["file"].path,
        lineno=rec["line"],
        msg=rec["message"],
        args=None,
        exc_info=exc_info,
        func=rec["function"],
    )
    record.created = rec["time"].timestamp()
    for key, value in rec["extra"].items():
        if isinstance(value, (str, int, float, bool)):
            setattr(record, key, value)
    _emit(record)


def install_loguru(level: int) -> bool:
    """Add our loguru sink once, if loguru is installed; True when it is in place."""
    global _loguru_sink_id
    if importlib.util.find_spec("loguru") is None:
        return False
    with _lock:
        if _loguru_sink_id is not None:
            return True
        from loguru import logger

        sink_level: int | str = level if level else LOGURU_DEFAULT_LEVEL
        _loguru_sink_id = logger.add(_loguru_sink, level=sink_level, format="{message}", catch=True)
        return True


def structlog_processor(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor that exports the event, then passes it on unchanged.

    Over stdlib loggers it does nothing: the rendered event reaches our root handler anyway,
    and exporting it here too would send every event twice.
    """
    if structlog_records.is_stdlib_logger(logger):
        return event_dict
    level_name = str(event_dict.get("level", method_name)).upper()
    level = logging.getLevelName("WARNING" if level_name == "WARN" else level_name)
    if not isinstance(level, int):
        level = logging.INFO
    exc_info = event_dict.get("exc_info")
    if exc_info is True:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord(
        name=str(event_dict.get("logger") or getattr(logger, "name", None) or "structlog"),
        level=level,
        pathname="",
        lineno=0,
        msg=str(event_dict.get("event", "")),
        args=None,
        exc_info=exc_info if isinstance(exc_info, tuple) else None,
    )
    structlog_records.add_fields(record, event_dict)
    _emit(record)
    return event_dict
