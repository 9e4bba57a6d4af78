"""Errors inside our server instrumentation: caught, counted, reported once; never the app's.

Every per-request step of ours runs under :func:`fault`; a bug or a strange input in our code
costs that request its telemetry (or part of it), never its response.
"""

from __future__ import annotations

import threading
from collections import Counter

from hyperdx.opentelemetry import diagnostics

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def fault(where: str, exc: BaseException) -> None:
    """Count one error of ours at ``where``; the first of each kind is printed."""
    with _lock:
        first = where not in _counts
        _counts[where] += 1
    if first:
        diagnostics.error(
            "server instrumentation error in %s (request served, its telemetry may be "
            "incomplete; further ones are counted): %r",
            where,
            exc,
        )


def problems() -> dict[str, int]:
    """{where: count} of errors caught in our server instrumentation in this process."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    with _lock:
        _counts.clear()
