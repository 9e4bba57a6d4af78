"""Fork awareness: every forked worker exports under its own identity.

Pre-fork servers (Gunicorn, uWSGI, Celery prefork, ``multiprocessing``) fork a process that
may already have configured telemetry.  Without care every worker reports the master's
``service.instance.id`` / ``process.pid`` (metric series collide), inherits metric state
recorded by the master (counted once per worker) and, under uWSGI, never restarts the export
threads because uWSGI forks without running Python's at-fork hooks.

``register(pipeline)`` is called once by ``configure_opentelemetry()``; it installs (once per
process) an ``os.register_at_fork`` child hook and, inside uWSGI, a ``uwsgidecorators.postfork``
hook (``uwsgi_fork``).  Both converge on :func:`reinit_after_fork`, which is idempotent per pid.
The child's identity lives in ``child_identity``; apps created before configure are found by
``preloaded_apps`` (re-exported here for ``configuration``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from hyperdx.opentelemetry import uwsgi_fork
from hyperdx.opentelemetry.child_identity import refresh_identity
from hyperdx.opentelemetry.pipeline_parts import Pipeline as _Pipeline
from hyperdx.opentelemetry.pipeline_parts import exporters as _exporters
from hyperdx.opentelemetry.pipeline_parts import metric_readers as _metric_readers
from hyperdx.opentelemetry.pipeline_parts import run_sdk_fork_handlers as _run_sdk_fork_handlers
from hyperdx.opentelemetry.preloaded_apps import instrument_preloaded_apps

__all__ = ["instrument_preloaded_apps", "problems", "register", "reinit_after_fork"]

#: Longest time a child leaving through ``os._exit`` waits for its telemetry to leave.
EXIT_FLUSH_TIMEOUT_CAP = 3.0


_state_lock = threading.Lock()
_pipeline: _Pipeline | None = None
_hooks_installed = False
_reinit_pid: int | None = None
_original_exit: Callable[[int], NoReturn] | None = None
_problems: dict[str, int] = {}


def register(pipeline: _Pipeline) -> None:
    """Make ``pipeline`` fork-aware; safe to call any number of times.

    The latest pipeline wins (a reconfigure replaces the previous one); the process-wide hooks
    are installed once.
    """
    global _pipeline, _hooks_installed, _reinit_pid
    with _state_lock:
        if pipeline is not _pipeline:  # built in this process: its identity is this pid's
            _reinit_pid = os.getpid()
        _pipeline = pipeline
        install = not _hooks_installed
        _hooks_installed = True
    if not install:
        return
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
    uwsgi_fork.install(lambda: _pipeline, lambda: reinit_after_fork(sdk_hooks_ran=False))


def _after_fork_in_child() -> None:
    """``os.register_at_fork`` hook: runs after the SDK's own at-fork hooks (registered earlier)."""
    reinit_after_fork(sdk_hooks_ran=True)


def reinit_after_fork(*, sdk_hooks_ran: bool) -> None:
    """Give this (child) process its own identity, fresh metric state and a flushing ``os._exit``.

    ``sdk_hooks_ran`` is False when the process was forked without Python's at-fork hooks (uWSGI
    without ``py-call-uwsgi-fork-hooks``): the SDK's own re-initialisation is then run here.
    Idempotent per pid.
    """
    global _reinit_pid
    pipeline = _pipeline
    pid = os.getpid()
    if pipeline is None or _reinit_pid == pid:
        return
    _reinit_pid = pid
    steps: list[tuple[str, Callable[[_Pipeline], None]]] = []
    if not sdk_hooks_ran:
        steps.append(("sdk_reinit", _run_sdk_fork_handlers))
    steps += [
        ("identity", refresh_identity),
        ("metrics_reset", _reset_inherited_metrics),
        ("exporter_connections", _drop_inherited_connections),
        ("log_handler", _reattach_log_handler),
        ("exit_flush", lambda _p: _wrap_os_exit()),
    ]
    for name, step in steps:
        try:
            step(pipeline)
        except Exception as exc:  # noqa: BLE001 - never break the forked worker; counted + reported once
            _report(name, exc)


def _report(step: str, exc: BaseException) -> None:
    count = _problems.get(step, 0)
    _problems[step] = count + 1
    if count == 0:
        from hyperdx.opentelemetry import diagnostics

        diagnostics.warn("after-fork step %r failed in pid %d: %r", step, os.getpid(), exc)


def problems() -> dict[str, int]:
    """Failed after-fork steps by name (for diagnostics and tests)."""
    return dict(_problems)


def _reattach_log_handler(pipeline: _Pipeline) -> None:
    """Put our OTLP handler back on the root logger if the parent removed it before forking.

    Celery's worker clears the root logger's handlers when it sets up logging
    (``worker_hijack_root_logger``), before it forks the pool: without this, task logs from
    the pool children would never be exported.
    """
    from hyperdx.opentelemetry import logs

    handler = logs.current_handler()
    if handler is None or handler in logging.getLogger().handlers:
        return
    level = getattr(getattr(pipeline.options, "log_level", None), "value", logging.NOTSET)
    logs.attach_handler(pipeline.logger_provider, level)


# --- metrics --------------------------------------------------------------------------------


def _reset_inherited_metrics(pipeline: _Pipeline) -> None:
    """Drop metric state recorded by the parent so each worker reports only its own work.

    Without this, cumulative sums recorded in the master before the fork are exported again by
    every worker under the worker's new identity.  Locks possibly held at fork are replaced.
    """
    consumer = getattr(pipeline.meter_provider, "_measurement_consumer", None)
    storages = getattr(consumer, "_reader_storages", None)
    if consumer is None or storages is None:
        return
    from opentelemetry.sdk.metrics._internal.metric_reader_storage import MetricReaderStorage

    consumer._lock = threading.Lock()  # noqa: SLF001
    consumer._reader_storages = {  # noqa: SLF001
        reader: MetricReaderStorage(
            consumer._sdk_config,  # noqa: SLF001
            reader._instrument_class_temporality,  # noqa: SLF001
            reader._instrument_class_aggregation,  # noqa: SLF001
        )
        for reader in storages
    }


# --- exporters ------------------------------------------------------------------------------


def _drop_inherited_connections(pipeline: _Pipeline) -> None:
    """Give each OTLP/HTTP exporter fresh connection pools in the child.

    The parent's keep-alive sockets are inherited: parent and child writing HTTP requests on one
    TCP connection interleave them, and a pool lock held by the parent's exporter thread at fork
    time would block the child forever.  The inherited sockets are closed (only this process's
    file descriptors) and new adapters mounted; the session's own settings (verify, cert, auth,
    headers) are kept.  Metric readers also get a new export lock for the same reason.
    """
    for reader in _metric_readers(pipeline):
        if hasattr(reader, "_export_lock"):
            reader._export_lock = threading.Lock()  # noqa: SLF001
    for exporter in _exporters(pipeline):
        session = _requests_session(exporter)
        if session is not None:
            _remount_adapters(session)


def _requests_session(exporter: Any) -> Any:
    transport = getattr(getattr(exporter, "_client", None), "_transport", None)
    session = getattr(transport, "_session", None) or getattr(exporter, "_session", None)
    return session if hasattr(session, "adapters") and hasattr(session, "mount") else None


def _remount_adapters(session: Any) -> None:
    from requests.adapters import HTTPAdapter

    for prefix, adapter in list(session.adapters.items()):
        if type(adapter) is not HTTPAdapter:
            continue  # a custom adapter: its owner knows how it survives a fork
        _close_pooled_sockets(adapter)
        session.mount(
            prefix,
            HTTPAdapter(
                pool_connections=adapter._pool_connections,  # noqa: SLF001
                pool_maxsize=adapter._pool_maxsize,  # noqa: SLF001
                max_retries=adapter.max_retries,
                pool_block=adapter._pool_block,  # noqa: SLF001
            ),
        )


def _close_pooled_sockets(adapter: Any) -> None:
    """Close idle inherited connections without taking any lock the parent may have held."""
    pools = getattr(getattr(adapter, "poolmanager", None), "pools", None)
    for pool in list(getattr(pools, "_container", {}).values()):
        idle = getattr(getattr(pool, "pool", None), "queue", ())
        for conn in list(idle):
            if conn is not None:
                conn.close()


# --- os._exit -------------------------------------------------------------------------------


def _exit_flush_timeout(pipeline: _Pipeline) -> float:
    configured = getattr(pipeline.options, "shutdown_timeout", None)
    configured = getattr(configured, "value", configured)  # a Setting (value + source)
    if isinstance(configured, (int, float)) and configured >= 0:
        return min(float(configured), EXIT_FLUSH_TIMEOUT_CAP)
    return EXIT_FLUSH_TIMEOUT_CAP


def _flush(timeout: float) -> None:
    try:
        from hyperdx.opentelemetry import lifecycle

        lifecycle.force_flush(timeout)
        return
    except (ImportError, AttributeError):
        pass
    pipeline = _pipeline
    if pipeline is None:
        return
    millis = int(timeout * 1000)
    for provider in (pipeline.tracer_provider, pipeline.logger_provider, pipeline.meter_provider):
        flush = getattr(provider, "force_flush", None)
        if callable(flush):
            flush(millis)


def _bounded_flush(timeout: float) -> None:
    """Flush in a helper thread so a slow exporter can never hold the exit past ``timeout``."""

    def run() -> None:
        try:
            _flush(timeout)
        except Exception as exc:  # noqa: BLE001 - exiting anyway; counted + reported once
            _report("exit_flush", exc)

    worker = threading.Thread(target=run, name="hyperdx-exit-flush", daemon=True)
    worker.start()
    worker.join(timeout)


def _wrap_os_exit() -> None:
    """Forked children (multiprocessing, Celery/billiard) leave via ``os._exit``: atexit never
    runs there, so flush first, bounded by a short deadline."""
    global _original_exit
    if _original_exit is not None:
        return
    original = os._exit
    _original_exit = original

    def _exit_after_flush(status: int) -> NoReturn:
        pipeline = _pipeline
        if pipeline is not None and os.getpid() == _reinit_pid:
            _bounded_flush(_exit_flush_timeout(pipeline))
        original(status)

    os._exit = _exit_after_flush
