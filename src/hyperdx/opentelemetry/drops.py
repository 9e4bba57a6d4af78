"""Drop accounting: nothing is lost silently.

Items can be lost in two places: a full queue in a batch processor (the app produces faster
than the endpoint accepts) and an export that fails after the exporter's own retries (endpoint
down, rejecting, or too slow). Both are counted per signal and reason; `report()` prints one
line at shutdown instead of an error per record.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from hyperdx.opentelemetry import diagnostics

_lock = threading.Lock()
_counts: Counter[tuple[str, str]] = Counter()


def record(signal: str, count: int, reason: str) -> None:
    if count <= 0:
        return
    with _lock:
        first = not any(key[0] == signal and key[1] == reason for key in _counts)
        _counts[(signal, reason)] += count
    if first:
        diagnostics.warn("dropping %s: %s (counted; a summary is printed at exit)", signal, reason)


def snapshot() -> dict[str, dict[str, int]]:
    """{signal: {reason: count}} for everything dropped so far in this process."""
    with _lock:
        out: dict[str, dict[str, int]] = {}
        for (signal, reason), count in _counts.items():
            out.setdefault(signal, {})[reason] = count
        return out


def reset() -> None:
    """Forget counts (a forked child starts its own account)."""
    with _lock:
        _counts.clear()


def report() -> str | None:
    """One line saying how many of each signal were dropped and why, if any."""
    snap = snapshot()
    if not snap:
        return None
    parts = [
        f"{sum(reasons.values())} {signal} ("
        + ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
        + ")"
        for signal, reasons in sorted(snap.items())
    ]
    line = "telemetry dropped in this process: " + "; ".join(parts)
    diagnostics.warn("%s", line)
    return line


def _count(batch: Any) -> int:
    """Items in a span/log batch, or data points in a MetricsData."""
    if isinstance(batch, Sequence):
        return len(batch)
    return sum(
        len(metric.data.data_points)
        for rm in getattr(batch, "resource_metrics", ())
        for sm in rm.scope_metrics
        for metric in sm.metrics
    )


E = TypeVar("E")


def counting(exporter: E, signal: str) -> E:
    """`exporter` wrapped so failures are counted; typed as the exporter it wraps."""
    return cast(E, CountingExporter(exporter, signal))


class CountingExporter:
    """Wraps an exporter so failed exports are counted (SDK exporters only log them)."""

    def __init__(self, exporter: Any, signal: str) -> None:
        self._exporter = exporter
        self._signal = signal
        self.in_flight = 0  # items handed to the exporter and not yet answered

    def export(self, batch: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        count = _count(batch)
        self.in_flight += count
        try:
            result = self._exporter.export(batch, *args, **kwargs)
        finally:
            self.in_flight -= count
        if getattr(result, "name", "") == "FAILURE":
            record(self._signal, count, "export failed (endpoint unreachable or rejecting)")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._exporter, name)
