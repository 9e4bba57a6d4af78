"""The SDK's own voice: warnings and errors reach stderr, each distinct one at most once a minute.

The app may have configured no logging at all, in which case Python would print nothing useful
for the `opentelemetry` and `hyperdx` loggers once our OTLP handler sits on the root logger
(its presence switches off `logging.lastResort`). So a small stderr handler hangs on those two
loggers. When the app has its own root handlers the records propagate to them instead and we
stay quiet, so nothing is printed twice.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time

logger = logging.getLogger("hyperdx.opentelemetry")
_SDK_LOGGERS = ("hyperdx.opentelemetry", "opentelemetry")
_INTERVAL_S = 60.0


class _OncePerInterval(logging.Filter):
    """Lets each distinct (logger, message template) through at most once per interval."""

    def __init__(self, interval: float = _INTERVAL_S) -> None:
        super().__init__()
        self._interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                return False
            if len(self._last) > 1000:
                self._last.clear()
            self._last[key] = now
        return True


class StderrDiagnostics(logging.Handler):
    """Prints the SDK's warnings when nothing else on the root logger would show them."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.addFilter(_OncePerInterval())
        self.setFormatter(logging.Formatter("hyperdx-opentelemetry %(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if _app_handles(record):
            return
        # A closed stderr (daemonised process) leaves nothing sensible to do.
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(self.format(record) + "\n")


def _app_handles(record: logging.LogRecord) -> bool:
    """True if a handler other than ours on the record's path would print it."""
    from hyperdx.opentelemetry.log_handlers import is_otlp_handler

    current: logging.Logger | None = logging.getLogger(record.name)
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, StderrDiagnostics) or is_otlp_handler(handler):
                continue
            if record.levelno >= handler.level:
                return True
        if not current.propagate:
            break
        current = current.parent
    return False


_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Attach the stderr handler once per process (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        handler = StderrDiagnostics()
        for name in _SDK_LOGGERS:
            log = logging.getLogger(name)
            if not any(isinstance(h, StderrDiagnostics) for h in log.handlers):
                log.addHandler(handler)
        _installed = True


def warn(message: str, *args: object) -> None:
    """Report a problem of ours; rate-limited by the handler on the formatted text."""
    install()
    logger.warning(_escape(message % args if args else message))


def error(message: str, *args: object) -> None:
    install()
    logger.error(_escape(message % args if args else message))


def _escape(text: str) -> str:
    return text.replace("%", "%%")
