"""Idempotent configuration, one shutdown deadline for all signals, exit and SIGTERM flush.

There is one pipeline per process. Calling configure again (a post-fork hook on top of
`opentelemetry-instrument`, uWSGI lazy-apps, tests) returns the existing one: no second
provider, processor or handler, and no "overriding" warnings from the API.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from hyperdx.opentelemetry import diagnostics, drops
from hyperdx.opentelemetry.export._batch import record_drop
from hyperdx.opentelemetry.options import Settings


@dataclass
class Pipeline:
    """The configured telemetry of this process."""

    settings: Settings
    resource: Resource
    tracer_provider: TracerProvider
    logger_provider: LoggerProvider
    meter_provider: MeterProvider
    options: Settings = field(init=False)  # the name forking.py and older code use

    def __post_init__(self) -> None:
        self.options = self.settings

    def providers(self) -> list[tuple[str, Any]]:
        return [
            ("traces", self.tracer_provider),
            ("logs", self.logger_provider),
            ("metrics", self.meter_provider),
        ]


_lock = threading.RLock()
_pipeline: Pipeline | None = None
_shut_down = False


def current() -> Pipeline | None:
    return _pipeline


def install(pipeline: Pipeline) -> Pipeline:
    """Make `pipeline` the process's telemetry (global providers, exit hooks)."""
    global _pipeline, _shut_down
    with _lock:
        _pipeline = pipeline
        _shut_down = False
        trace.set_tracer_provider(pipeline.tracer_provider)
        _logs.set_logger_provider(pipeline.logger_provider)
        metrics.set_meter_provider(pipeline.meter_provider)
        _register_exit_hooks()
        return pipeline


def _run_parallel(action: Callable[[Any, float], Any], timeout: float) -> list[str]:
    """Run `action(provider, timeout)` for each signal in parallel; names of those unfinished."""
    pipeline = _pipeline
    if pipeline is None:
        return []
    deadline = time.monotonic() + timeout
    threads = []
    late = []
    for name, provider in pipeline.providers():
        t = threading.Thread(
            target=_guarded,
            args=(action, name, provider, timeout),
            name=f"hyperdx-{name}-flush",
            daemon=True,
        )
        try:
            t.start()
        except RuntimeError:
            # CPython 3.12.0/3.12.1 refuse new threads inside atexit callbacks ("can't
            # create new thread at interpreter shutdown"): flush this signal here instead,
            # within what is left of the deadline, rather than lose it.
            _guarded_until(deadline, action, name, provider)
            if time.monotonic() >= deadline:
                late.append(name)
            continue
        threads.append((name, t))
    for name, t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            late.append(name)
    return late


class _DeadlinePassed(BaseException):
    """Raised by the alarm in the calling thread when an inline flush runs past the deadline."""


def _guarded_until(
    deadline: float, action: Callable[[Any, float], Any], name: str, provider: Any
) -> None:
    """Run one signal's flush in this thread, cut off at ``deadline``.

    Without a thread to abandon, a collector that never answers would hold the exit for the
    exporter's whole timeout; in the main thread a SIGALRM interrupts the blocking socket read
    instead (an exception the SDK's own ``except Exception`` cannot swallow).
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return
    if threading.current_thread() is not threading.main_thread():
        _guarded(action, name, provider, remaining)
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise _DeadlinePassed

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, remaining)
    try:
        _guarded(action, name, provider, remaining)
    except _DeadlinePassed:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _guarded(action: Callable[[Any, float], Any], name: str, provider: Any, timeout: float) -> None:
    try:
        action(provider, timeout)
    except Exception as exc:  # noqa: BLE001 - report, never raise into the app at exit
        diagnostics.error("%s flush failed: %s", name, exc)


def _abandon(name: str, provider: Any) -> None:
    """Stop a late provider's export path and count what it still held at the deadline.

    Queued items are lost; an export in flight may still arrive and is counted apart (see
    ``Batcher.abandon``), so no item is both received and counted as lost.
    """
    multi = getattr(provider, "_active_span_processor", None) or getattr(
        provider, "_multi_log_record_processor", None
    )
    processors = list(
        getattr(multi, "_span_processors", ()) or getattr(multi, "_log_record_processors", ())
    )
    for proc in processors:
        batcher = getattr(proc, "_batcher", None)
        if batcher is not None:
            batcher.abandon()
    for reader in getattr(provider, "_metric_readers", ()):
        in_flight = getattr(getattr(reader, "_exporter", None), "in_flight", 0)
        record_drop(name, "in_flight_at_deadline", in_flight)


def force_flush(timeout: float | None = None) -> bool:
    """Export everything buffered, all signals in parallel, within `timeout` seconds."""
    pipeline = _pipeline
    if pipeline is None:
        return True
    limit = pipeline.settings.shutdown_timeout.value if timeout is None else timeout
    late = _run_parallel(lambda p, t: p.force_flush(int(t * 1000)), limit)
    return not late


def shutdown(timeout: float | None = None) -> bool:
    """Flush and stop all three signals under one deadline; idempotent.

    Returns False if the deadline passed first: whatever was still queued is counted as
    dropped, an export still in flight as possibly arrived, both reported in one line, and
    the process is free to exit.
    """
    global _shut_down
    with _lock:
        pipeline = _pipeline
        if pipeline is None or _shut_down:
            return True
        _shut_down = True
    limit = pipeline.settings.shutdown_timeout.value if timeout is None else timeout
    late = _run_parallel(lambda p, t: p.shutdown(), limit)
    for name, provider in pipeline.providers():
        if name in late:
            _abandon(name, provider)
    drops.report()
    return not late


_hooks_registered = False


def _register_exit_hooks() -> None:
    global _hooks_registered
    if _hooks_registered:
        return
    _hooks_registered = True
    atexit.register(shutdown)
    _chain_sigterm()


def _chain_sigterm() -> None:
    """Flush on SIGTERM (what `docker stop` sends) without taking the signal from the app.

    With no handler of the app's, SIGTERM would kill the process before atexit runs; we flush
    and then die by the default action as before. A handler the app installed is kept: we
    flush and call it. An ignored SIGTERM stays ignored. Servers that install their own
    handlers later (gunicorn, uvicorn) replace ours and exit normally, so atexit flushes.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        return
    if previous is signal.SIG_IGN or previous is None:
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if callable(previous):
            force_flush()
            previous(signum, frame)
            return
        shutdown()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):
        return
