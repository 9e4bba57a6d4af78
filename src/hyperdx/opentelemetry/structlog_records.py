"""structlog events as log records: the event is the body, its fields are attributes.

Two ways a structlog event becomes one exported record (never two):
- its own loggers (``PrintLoggerFactory``, ``make_filtering_bound_logger``): our processor
  (``integrations.structlog_processor``) builds the record;
- stdlib loggers (``structlog.stdlib.LoggerFactory``): the record reaches our root handler like
  any other, so the processor stands aside.  With ``ProcessorFormatter.wrap_for_formatter`` the
  record carries the event dict itself, which :func:`flatten` turns into body + attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

#: Keys structlog uses for its own bookkeeping or that the record already has a field for.
SKIP = frozenset(
    {"event", "level", "timestamp", "logger", "exc_info", "_record", "_from_structlog"}
)
#: ``extra`` that ``ProcessorFormatter.wrap_for_formatter`` puts on the stdlib record.
_WRAP_EXTRA = ("_logger", "_name")


def add_fields(record: logging.LogRecord, event_dict: Mapping[str, Any]) -> None:
    """The event's plain fields become record attributes (exported as log attributes)."""
    for key, value in event_dict.items():
        if key not in SKIP and isinstance(value, (str, int, float, bool)):
            setattr(record, key, value)


def flatten(record: logging.LogRecord) -> logging.LogRecord:
    """A record whose message is a structlog event dict -> a copy with body and attributes.

    Other records are returned as they are.  The copy keeps the record's time, level, logger
    name and exception, so only the shape of the export changes, not what the app's own
    handlers see.
    """
    event_dict = record.msg
    if not isinstance(event_dict, dict) or not hasattr(record, "_logger"):
        return record
    flat = logging.makeLogRecord(record.__dict__)
    for key in _WRAP_EXTRA:
        flat.__dict__.pop(key, None)
    flat.msg = str(event_dict.get("event", ""))
    flat.args = None
    add_fields(flat, event_dict)
    return flat


def is_stdlib_logger(logger: Any) -> bool:
    """structlog over stdlib logging: the record will reach our root handler by itself."""
    return isinstance(logger, (logging.Logger, logging.LoggerAdapter))
