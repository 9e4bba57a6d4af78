"""Admission control for the receiver: answer "retry later" at once instead of queueing.

Without it, a receiver fed faster than it can store queues every request, so latency grows
until exporters time out, and a request the client gave up on can still be committed and then
stored twice when the client retries it. The collector's answer is backpressure: refuse what
cannot be stored soon with a retryable status (HTTP 503 + ``Retry-After``, gRPC
``UNAVAILABLE`` + ``RetryInfo``), and the OpenTelemetry exporters retry it later.

A request is admitted while the items admitted but not yet stored, plus its own, stay under
an adaptive limit, and while the raw request bytes held in memory stay under ``max_bytes``.
The limit follows the latency of stored requests (arrival to stored): it grows while they
finish within ``target_latency`` and shrinks when they take longer, the way adaptive
concurrency limiters do. A fixed limit from the measured rate would not do: each chDB insert
has a large fixed cost, so the fewer requests are admitted, the smaller the group commits and
the lower the rate, which would admit fewer still. A request that waited longer than
``target_latency`` for a worker is refused too, so none is held for long before its answer.
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

    ``initial_limit`` items may be in flight at first; the limit then moves between
    ``min_limit`` and ``max_limit``. A lone request is always admitted. The floor of 4,096
    items (eight 512-record requests) keeps the writer's group commits at a few thousand
    rows even when a busy machine slows every request: at the earlier 2,048 the limit sat
    there under load, inserts shrank to ~2.5k rows and each row cost more (every insert
    and every part it leaves for the merges has a large fixed cost).
    """

    def __init__(
        self,
        *,
        target_latency: float = 0.5,
        max_bytes: int = 64 << 20,
        initial_limit: int = 8192,
        min_limit: int = 4096,
        max_limit: int = 65_536,
    ) -> None:
        if target_latency <= 0:
            raise ValueError(f"target_latency must be positive, got {target_latency!r}")
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
        if not 0 < min_limit <= initial_limit <= max_limit:
            raise ValueError("limits must satisfy 0 < min_limit <= initial_limit <= max_limit")
        self.target_latency = target_latency
        self.max_bytes = max_bytes
        self.limit = float(initial_limit)
        self._min_limit = min_limit
        self._max_limit = max_limit
        self._rate = 10_000.0  # items/s, for Retry-After only
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

    def admit(self, items: int, since: float, queued: bool = False) -> None:
        """Admit ``items`` from a request that started waiting at ``since`` (monotonic).

        Raises :class:`Overloaded` when the request ``queued`` for a worker (all were busy)
        and that wait passed the target latency, or when the items ahead of it plus its own
        exceed the current limit. A slow machine alone refuses nothing.
        """
        waited = time.monotonic() - since
        with self._lock:
            refusal = self._refusal_locked(waited, queued, items)
            if refusal is not None:
                raise refusal
            self._items += items

    def check_room(self, since: float, queued: bool = False) -> None:
        """Raise :class:`Overloaded` if a request arriving at ``since`` would be refused
        whatever its size: it waited too long for a worker, or the limit is already reached.

        Called before the body is decompressed and decoded, so a refusal under overload
        costs no gunzip or protobuf decode (~0.4 ms per 512-record request); :meth:`admit`
        still decides, with the item count, once the request is decoded.
        """
        waited = time.monotonic() - since
        with self._lock:
            refusal = self._refusal_locked(waited, queued, None)
            if refusal is not None:
                raise refusal

    def _refusal_locked(
        self, waited: float, queued: bool, incoming: int | None
    ) -> Overloaded | None:
        """The one place of the two refusal rules (``_lock`` held); counts a refusal.

        ``incoming`` is the request's item count, or None before it is decoded: then the
        limit refuses once the items ahead reach it (``>=``), since any request adds some.
        """
        refusal: Overloaded | None = None
        if queued and waited > self.target_latency:
            refusal = Overloaded(f"waited {waited:.2f}s for a worker", self._retry_after_locked())
        elif self._items and (
            self._items >= self.limit if incoming is None else self._items + incoming > self.limit
        ):
            refusal = Overloaded(
                f"{self._items} items queued ahead (limit {int(self.limit)})",
                self._retry_after_locked(),
            )
        if refusal is not None:
            self.refused += 1
        return refusal

    def done(self, items: int, stored: bool, since: float) -> None:
        """Release admitted ``items`` of a request that arrived at ``since``; a stored one
        moves the limit by how its latency compares with the target."""
        now = time.monotonic()
        with self._lock:
            self._items = max(0, self._items - items)
            if not stored:
                # refused after admission (deadline): the store is behind
                self.limit = max(self._min_limit, self.limit * 0.7)
                return
            latency = now - since
            if latency > self.target_latency:
                self.limit = max(self._min_limit, self.limit * 0.9)
            elif self._items + items >= 0.5 * self.limit:  # grow only when the limit binds
                self.limit = min(self._max_limit, self.limit + max(items, 1) * 0.25)
            if items:
                self._window.append((now, items))
                self._window_items += items
                self._measured_rate(now)

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
                self._rate = max(1.0, self._window_items / span)
        return self._rate

    def _retry_after_locked(self) -> int:
        """Whole seconds until the queue ahead is likely stored (1..3): exporters give up when
        the delay exceeds what is left of their own timeout (10 s by default)."""
        drain = self._items / self._rate if self._rate else 1.0
        return min(3, max(1, math.ceil(drain)))
