"""A batching core shared by the span and log processors: cheap hand-off, counted drops.

Differs from the SDK's ``BatchProcessor`` in three ways, each measured:

- ``put`` is a length check and a ``deque.append`` (no per-item ``os.getpid()``, no log call
  per dropped item, no metrics call); fork safety comes from ``os.register_at_fork``.
- A full queue drops the *new* item and counts it; the first drop is logged once, the total is
  available from :func:`hyperdx.opentelemetry.export.dropped` and logged once at shutdown.
- Failed exports are counted too, so every item is either delivered or counted.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

_logger = logging.getLogger(__name__)

T = TypeVar("T")

ExportFn = Callable[[Sequence[Any]], bool]

# Counters per signal, shared by every processor in the process ("spans", "logs").
_counts: dict[str, int] = {}
_counts_lock = threading.Lock()


def _count(key: str, n: int) -> None:
    with _counts_lock:
        _counts[key] = _counts.get(key, 0) + n


# The distro's process-wide account (one warning per signal and reason, one summary at exit).
_DISTRO_SIGNAL = {"spans": "traces", "logs": "logs"}
_REASONS = {
    "queue_full": "queue full (export slower than the app)",
    "export_failed": "export failed (endpoint unreachable or rejecting)",
    "after_shutdown": "emitted after shutdown",
    "shutdown_deadline": "shutdown deadline reached",
    "in_flight_at_deadline": "in flight at the shutdown deadline (may have arrived)",
    "unencodable": "could not be encoded",
    "rejected": "rejected by the collector (partial success)",
    "too_large": "too large for the collector (413) even alone",
}


def _report(signal: str, reason: str, n: int) -> bool:
    """Hand the drop to ``hyperdx.opentelemetry.drops``; False when it is not available."""
    try:
        from hyperdx.opentelemetry import drops
    except ImportError:
        return False
    drops.record(_DISTRO_SIGNAL.get(signal, signal), n, _REASONS.get(reason, reason))
    return True


def record_drop(signal: str, reason: str, n: int) -> bool:
    """Count ``n`` undelivered items of ``signal`` ("spans", "logs") once, here and in the
    distro's account; False when the distro's account is not available (logged by caller)."""
    _count(f"{signal}_{reason}", n)
    return _report(signal, reason, n)


def counts() -> dict[str, int]:
    with _counts_lock:
        return dict(_counts)


class Batcher(Generic[T]):
    """Queue + worker thread; ``export(batch) -> bool`` does the sending (True = delivered)."""

    def __init__(
        self,
        signal: str,
        export: ExportFn,
        *,
        schedule_delay_millis: float,
        max_queue_size: int,
        max_export_batch_size: int,
        on_fork: Callable[[], None] | None = None,
    ) -> None:
        if max_queue_size <= 0:
            raise ValueError(f"max_queue_size must be positive, got {max_queue_size!r}")
        if schedule_delay_millis <= 0:
            raise ValueError(
                f"schedule_delay_millis must be positive, got {schedule_delay_millis!r}"
            )
        if not 0 < max_export_batch_size <= max_queue_size:
            raise ValueError(
                f"max_export_batch_size must be in 1..max_queue_size ({max_queue_size}), "
                f"got {max_export_batch_size!r}"
            )
        self.signal = signal
        self._export = export
        self._delay = schedule_delay_millis / 1000.0
        self._max_queue = max_queue_size
        self._batch_size = max_export_batch_size
        self._queue: collections.deque[T] = collections.deque()
        self._shutdown = False
        self._warned_full = False
        self._warned_encode = False
        self._dropped_here = 0
        self._reported_to_distro = _report(signal, "queue_full", 0)
        self.in_flight = 0  # items handed to the exporter and not yet answered
        self._abandoned = False
        self._take_lock = threading.Lock()  # taking a batch vs abandon(): counted once
        for key in _REASONS:
            _count(f"{signal}_{key}", 0)
        self._on_fork = on_fork
        self._pid = os.getpid()
        self._start()
        weak = weakref.WeakMethod(self.after_fork)
        os.register_at_fork(after_in_child=lambda: (m := weak()) and m())

    def _start(self) -> None:
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"HyperDXBatch-{self.signal}", daemon=True
        )
        self._thread.start()

    def after_fork(self) -> None:
        """In a forked child: drop the parent's items (the parent exports them), new lock,
        new worker thread, new connections. Runs once per process, however often called."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._queue.clear()
        if self._on_fork is not None:
            self._on_fork()
        if not self._shutdown:
            self._start()

    # -- producer side (application threads) -------------------------------------------
    def put(self, item: T) -> None:
        queue = self._queue
        if len(queue) >= self._max_queue or self._shutdown:
            self._drop(1, "after_shutdown" if self._shutdown else "queue_full")
            return
        queue.append(item)
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    def _drop(self, n: int, reason: str) -> None:
        self._dropped_here += n
        if record_drop(self.signal, reason, n):
            return
        if reason != "export_failed" and not self._warned_full:
            self._warned_full = True
            _logger.warning(
                "%s queue full (max_queue_size=%d) or shut down: dropping new %s; further drops "
                "are counted, see hyperdx.opentelemetry.export.dropped()",
                self.signal,
                self._max_queue,
                self.signal,
            )

    def unencodable(self, error: Exception) -> None:
        """An item the encoder rejected at hand-off: counted, the first one logged."""
        if not self._warned_encode:
            self._warned_encode = True
            _logger.error("cannot encode a %s item: %r (counted)", self.signal, error)
        self._drop(1, "unencodable")

    # -- consumer side ---------------------------------------------------------------------
    def _run(self) -> None:
        attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))  # never detached: own thread
        while not self._shutdown:
            # Woken early = a full batch is waiting: send full batches only and let the tail
            # fill up; woken by the timer = send everything (small batches cost CPU per item).
            woke = self._wake.wait(self._delay)
            self._wake.clear()
            if self._shutdown:
                break
            self._drain(full_batches_only=woke, deadline=None)

    def _drain(self, *, full_batches_only: bool, deadline: float | None) -> bool:
        """Export queued items in batches; True if the queue was emptied in time."""
        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._export_lock.acquire(timeout=wait):
            return False  # an export is still running (e.g. retrying a dead endpoint)
        try:
            queue = self._queue
            first = True
            while queue:
                if not first and full_batches_only and len(queue) < self._batch_size:
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                first = False
                with self._take_lock:
                    if self._abandoned:
                        return False
                    n = min(self._batch_size, len(queue))
                    popleft = queue.popleft
                    batch = [popleft() for _ in range(n)]
                    self.in_flight = n
                self._send(batch)
            return True
        finally:
            self._export_lock.release()

    def _send(self, batch: list[T]) -> None:
        try:
            ok = self._export(batch)
        except Exception as error:  # noqa: BLE001 - an exporter must never kill the worker
            ok = False
            _logger.exception("exporting %d %s failed: %s", len(batch), self.signal, error)
        finally:
            self.in_flight = 0
        if not ok and not self._abandoned:  # abandoned: already counted as in flight
            self._drop(len(batch), "export_failed")

    def force_flush(self, timeout_millis: float = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000.0
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            return self._drain(full_batches_only=False, deadline=deadline)
        finally:
            detach(token)

    def shutdown(self, timeout_millis: float = 30000) -> bool:
        if self._shutdown:
            return True
        deadline = time.monotonic() + timeout_millis / 1000.0
        self._shutdown = True
        self._wake.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        done = self.force_flush(max(0.0, deadline - time.monotonic()) * 1000.0)
        left = len(self._queue)
        if left:
            self._queue.clear()
            self._drop(left, "shutdown_deadline")
        if self._dropped_here and not self._reported_to_distro:
            _logger.warning(
                "%d %s were not delivered (queue full, failed exports or shutdown deadline)",
                self._dropped_here,
                self.signal,
            )
        return done and not left

    def abandon(self) -> None:
        """Stop sending for good (the shutdown deadline passed) and count what is left.

        The queued items are cleared and counted as lost, so none of them can still be sent
        while the process exits. The batch in flight may still reach the collector (its
        answer is not awaited): it is counted apart, never as simply lost, since it may also
        be counted as received.
        """
        with self._take_lock:
            self._abandoned = True
            queued = len(self._queue)
            self._queue.clear()
            in_flight = self.in_flight
        self._drop(queued, "shutdown_deadline")
        self._drop(in_flight, "in_flight_at_deadline")
