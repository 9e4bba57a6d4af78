"""Admission control for the receiver: answer "retry later" at once instead of queueing.

Without it, a receiver fed faster than it can store queues every request, so latency grows
until exporters time out, and a request the client gave up on can still be committed and then
stored twice when the client retries it. The collector's answer is backpressure: refuse what
cannot be stored soon with a retryable status (HTTP 503 + ``Retry-After``, gRPC
``UNAVAILABLE`` + ``RetryInfo``), and the OpenTelemetry exporters retry it later.

A request is admitted when the items already admitted (but not yet stored) plus its own can be
stored within ``wait_budget`` seconds at the measured storage rate, and when the raw request
bytes held in memory stay under ``max_bytes``. A request that waited longer than
``wait_budget`` for a worker is refused too, so no request is held for long before its answer.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

__all__ = ["Admission", "Overloaded"]

# Measured throughput is items stored per second over this trailing window.
_WINDOW_SECONDS = 2.0


class Overloaded(Exception):
    """Refused for now; the client should retry after ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Admission:
    """Thread-safe counters of in-flight work, and the rule that admits or refuses more.

    ``initial_rate`` (items/s) is the guess used until enough requests have completed to
    measure; ``min_rate`` keeps a slow start from refusing everything.
    """

    def __init__(
        self,
        *,
        wait_budget: float = 0.4,
        max_bytes: int = 64 << 20,
        initial_rate: float = 10_000.0,
        min_rate: float = 2_000.0,
    ) -> None:
        if wait_budget <= 0:
            raise ValueError(f"wait_budget must be positive, got {wait_budget!r}")
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
        self.wait_budget = wait_budget
        self.max_bytes = max_bytes
        self._min_rate = min_rate
        self._rate = max(initial_rate, min_rate)
        self._lock = threading.Lock()
        self._bytes = 0
        self._items = 0
        self._window: deque[tuple[float, int]] = deque()
        self._window_items = 0
        self.refused = 0

    # -- bytes: checked on the event loop before the body is read ----------------------------

    def reserve_bytes(self, size: int) -> None:
        """Hold ``size`` bytes of request body, or raise :class:`Overloaded`.

        A lone request is always let through (its size is capped by the body limit).
        """
        with self._lock:
            if self._bytes and self._bytes + size > self.max_bytes:
                self.refused += 1
                raise Overloaded(
                    f"{self._bytes} request bytes already queued", self._retry_after_locked()
                )
            self._bytes += size

    def release_bytes(self, size: int) -> None:
        with self._lock:
            self._bytes = max(0, self._bytes - size)

    # -- items: checked once the request is decoded ------------------------------------------

    def admit(self, items: int, since: float) -> None:
        """Admit ``items`` from a request that started waiting at ``since`` (monotonic).

        Raises :class:`Overloaded` when the request already waited past the budget, or when the
        items ahead of it plus its own would take longer than the budget to store.
        """
        now = time.monotonic()
        with self._lock:
            waited = now - since
            if waited > self.wait_budget:
                self.refused += 1
                raise Overloaded(f"waited {waited:.2f}s for a worker", self._retry_after_locked())
            rate = self._measured_rate(now)
            if self._items and (self._items + items) / rate > self.wait_budget:
                self.refused += 1
                raise Overloaded(
                    f"{self._items} items queued ahead (~{self._items / rate:.2f}s to store)",
                    self._retry_after_locked(),
                )
            self._items += items

    def done(self, items: int, stored: bool) -> None:
        """Release admitted ``items``; ``stored`` ones count toward the measured rate."""
        now = time.monotonic()
        with self._lock:
            self._items = max(0, self._items - items)
            if stored and items:
                self._window.append((now, items))
                self._window_items += items

    @property
    def queued_items(self) -> int:
        return self._items

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def _measured_rate(self, now: float) -> float:
        window = self._window
        while window and window[0][0] < now - _WINDOW_SECONDS:
            self._window_items -= window.popleft()[1]
        if len(window) >= 4:
            span = now - window[0][0]
            if span >= 0.25:
                self._rate = max(self._min_rate, self._window_items / span)
        return self._rate

    def _retry_after_locked(self) -> int:
        """Whole seconds until the queue ahead is likely stored (1..3): exporters give up when
        the delay exceeds what is left of their own timeout (10 s by default)."""
        drain = self._items / self._rate if self._rate else 1.0
        return min(3, max(1, math.ceil(drain)))
