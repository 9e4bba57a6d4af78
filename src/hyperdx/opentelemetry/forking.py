"""Fork awareness: every forked worker exports under its own identity.

Pre-fork servers (Gunicorn, uWSGI, Celery prefork, ``multiprocessing``) fork a process that
may already have configured telemetry.  Without care every worker reports the master's
``service.instance.id`` / ``process.pid`` (metric series collide), inherits metric state
recorded by the master (counted once per worker) and, under uWSGI, never restarts the export
threads because uWSGI forks without running Python's at-fork hooks.

``register(pipeline)`` is called once by ``configure_opentelemetry()``; it installs (once per
process) an ``os.register_at_fork`` child hook and, inside uWSGI, a ``uwsgidecorators.postfork``
hook.  Both converge on :func:`reinit_after_fork`, which is idempotent per pid.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource

SERVICE_INSTANCE_ID = "service.instance.id"
PROCESS_PID = "process.pid"
PROCESS_PARENT_PID = "process.parent_pid"

#: Longest time a child leaving through ``os._exit`` waits for its telemetry to leave.
EXIT_FLUSH_TIMEOUT_CAP = 3.0


class _Pipeline(Protocol):
    resource: Resource
    tracer_provider: Any
    logger_provider: Any
    meter_provider: Any
    options: Any


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
    _install_uwsgi_postfork()


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
        ("identity", _refresh_identity),
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


# --- identity -------------------------------------------------------------------------------


def _new_instance_id() -> str:
    """The SDK regenerates ``service.instance.id`` per pid; reuse its value so all agree."""
    try:
        from opentelemetry.sdk.resources import ServiceInstanceIdResourceDetector

        value = ServiceInstanceIdResourceDetector().detect().attributes.get(SERVICE_INSTANCE_ID)
        if isinstance(value, str) and value:
            return value
    except ImportError:
        pass
    return str(uuid.uuid4())


def _child_identity() -> dict[str, Any]:
    return {
        SERVICE_INSTANCE_ID: _new_instance_id(),
        PROCESS_PID: os.getpid(),
        PROCESS_PARENT_PID: os.getppid(),
    }


def _replace_attributes(resource: Resource, updates: dict[str, Any]) -> None:
    """Update a Resource in place, so every holder of this very object sees the new identity."""
    merged = dict(resource.attributes)
    merged.update(updates)
    resource._attributes = BoundedAttributes(attributes=merged, immutable=True)  # noqa: SLF001


def _refresh_identity(pipeline: _Pipeline) -> None:
    """Set the child's identity on the shared Resource and on every provider/tracer/logger.

    The shared object is updated in place (holders that kept a reference see it); providers are
    then pointed at it again, because the SDK's own at-fork hook (SDK >= 1.39) merges a *copy*
    per provider and would otherwise leave the three signals on three objects.
    """
    identity = _child_identity()
    shared = pipeline.resource
    _replace_attributes(shared, identity)
    _point_providers_at(pipeline, shared)


def _point_providers_at(pipeline: _Pipeline, resource: Resource) -> None:
    tp = pipeline.tracer_provider
    if hasattr(tp, "_resource"):
        lock = getattr(tp, "_tracers_lock", None) or threading.Lock()
        with lock:
            tp._resource = resource  # noqa: SLF001
            for tracer in list(getattr(tp, "_tracers", {}).values()):
                _set_holder_resource(tracer, resource)
    lp = pipeline.logger_provider
    if hasattr(lp, "_resource"):
        lock = getattr(lp, "_active_loggers_lock", None) or threading.Lock()
        with lock:
            lp._resource = resource  # noqa: SLF001
            for logger in list(getattr(lp, "_active_loggers", ())):
                _set_holder_resource(logger, resource)
            for logger in list(getattr(lp, "_logger_cache", {}).values()):
                _set_holder_resource(logger, resource)
    mp = pipeline.meter_provider
    sdk_config = getattr(mp, "_sdk_config", None)
    if sdk_config is not None:
        sdk_config.resource = resource


def _set_holder_resource(holder: Any, resource: Resource) -> None:
    setter = getattr(holder, "_set_resource", None)
    if callable(setter):
        setter(resource)
    elif hasattr(holder, "resource"):
        holder.resource = resource
    else:
        holder._resource = resource  # noqa: SLF001


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


def _exporters(pipeline: _Pipeline) -> list[Any]:
    found = [getattr(p, "_exporter", None) for p in _span_and_log_processors(pipeline)]
    found += [getattr(r, "_exporter", None) for r in _metric_readers(pipeline)]
    return [e for e in found if e is not None]


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


# --- apps created before telemetry was configured ----------------------------------------------


def instrument_preloaded_apps() -> int:
    """Instrument web app objects that were created before auto-instrumentation was activated.

    Flask and FastAPI instrumentors patch the *class*, so an app object created earlier (uWSGI
    without ``lazy-apps``, Gunicorn ``--preload``, or ``app = Flask(...)`` above the
    ``configure_opentelemetry()`` call) would never produce server spans.  Only frameworks whose
    instrumentor is active are touched (so ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` holds), with
    the options the instrumentor was activated with; instrumented apps are skipped.  Returns how
    many apps were instrumented.
    """
    done = 0
    for framework in ("flask", "fastapi"):
        if framework not in sys.modules:
            continue
        found = _active_instrumentor(framework)
        if found is None:
            continue
        instrumentor, app_cls, kwargs = found
        for app in _module_level_instances(app_cls):
            if not getattr(app, "_is_instrumented_by_opentelemetry", False):
                instrumentor.instrument_app(app, **kwargs)
                done += 1
    return done


def _active_instrumentor(framework: str) -> tuple[Any, type, dict[str, Any]] | None:
    """(instrumentor, original app class, instrumentation kwargs) if that instrumentor is on."""
    import importlib

    module = importlib.import_module(f"opentelemetry.instrumentation.{framework}")
    if framework == "flask":
        instrumentor: Any = module.FlaskInstrumentor()
        patched: Any = module._InstrumentedFlask  # noqa: SLF001
        names = ("request_hook", "response_hook", "tracer_provider", "meter_provider")
        kwargs = {n: getattr(patched, f"_{n}", None) for n in names}
        kwargs["enable_commenter"] = getattr(patched, "_enable_commenter", True)
        kwargs["commenter_options"] = getattr(patched, "_commenter_options", None)
        original = getattr(instrumentor, "_original_flask", None)
    else:
        instrumentor = module.FastAPIInstrumentor()
        patched = module._InstrumentedFastAPI  # noqa: SLF001
        kwargs = dict(getattr(patched, "_instrument_kwargs", {}))
        original = getattr(instrumentor, "_original_fastapi", None)
    if not instrumentor.is_instrumented_by_opentelemetry or not isinstance(original, type):
        return None
    return instrumentor, original, {k: v for k, v in kwargs.items() if v is not None}


def _module_level_instances(cls: type) -> list[Any]:
    """Instances of ``cls`` bound to a module global (where WSGI/ASGI apps live)."""
    seen: dict[int, Any] = {}
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for value in list(namespace.values()):
            if isinstance(value, cls):
                seen[id(value)] = value
    return list(seen.values())


# --- SDK re-initialisation when Python's at-fork hooks did not run (uWSGI) --------------------


def _run_sdk_fork_handlers(pipeline: _Pipeline) -> None:
    """Do what the SDK's ``os.register_at_fork`` hooks would have done in this child."""
    for provider in (pipeline.tracer_provider, pipeline.logger_provider, pipeline.meter_provider):
        handle = getattr(provider, "_handle_fork", None)
        if callable(handle):
            handle()
    _reinit_executors(pipeline)
    for processor in _span_and_log_processors(pipeline):
        reinit = getattr(processor, "_at_fork_reinit", None)
        if callable(reinit):
            reinit()
    for reader in _metric_readers(pipeline):
        # Without Python's at-fork hooks ``threading`` still believes the master's reader thread
        # is alive in this child (and ``shutdown`` would wait out its whole timeout joining it),
        # so always start a new one.
        reinit = getattr(reader, "_at_fork_reinit", None)
        if getattr(reader, "_daemon_thread", None) is not None and callable(reinit):
            reinit()


def _span_and_log_processors(pipeline: _Pipeline) -> list[Any]:
    """The batch processors (unwrapped) of the tracer and logger providers."""
    found: list[Any] = []
    for multi, attr in _multi_processors(pipeline):
        for proc in getattr(multi, attr, ()):
            found.append(getattr(proc, "_batch_processor", proc))
    return found


def _multi_processors(pipeline: _Pipeline) -> list[tuple[Any, str]]:
    return [
        (getattr(pipeline.tracer_provider, "_active_span_processor", None), "_span_processors"),
        (
            getattr(pipeline.logger_provider, "_multi_log_record_processor", None),
            "_log_record_processors",
        ),
    ]


def _reinit_executors(pipeline: _Pipeline) -> None:
    """Concurrent multi-processors own a thread pool whose threads did not survive the fork."""
    for multi, _attr in _multi_processors(pipeline):
        init_executor = getattr(multi, "_init_executor", None)
        if callable(init_executor):
            init_executor(getattr(getattr(multi, "_executor", None), "_max_workers", 2))


def _metric_readers(pipeline: _Pipeline) -> list[Any]:
    """Readers of the meter provider, including ones added after construction."""
    mp = pipeline.meter_provider
    readers = list(getattr(mp, "_metric_readers", ()))
    storages = getattr(getattr(mp, "_measurement_consumer", None), "_reader_storages", {})
    readers += [r for r in storages if r not in readers]
    return readers


def _install_uwsgi_postfork() -> None:
    """Inside uWSGI, re-initialise from uWSGI's own post-fork hook (chained, not replaced).

    Under ``opentelemetry-instrument`` we are configured from ``sitecustomize`` in the uWSGI
    master, before uWSGI has created its ``uwsgi`` module.  uWSGI then forks from C without
    taking the GIL (unless ``py-call-uwsgi-fork-hooks``): a worker forked while one of our
    export threads held the GIL would hang forever.  So the master's export threads are
    stopped here, and every worker starts its own; the hook is installed by the first import
    that happens after the ``uwsgi`` module exists (the app's, in the master or, with
    lazy-apps, in the worker).
    """
    if _hook_into_uwsgi() or not _inside_uwsgi():
        return
    _park_export_threads()
    sys.meta_path.insert(0, _UwsgiModuleWatch())


def _inside_uwsgi() -> bool:
    return "uwsgi" in os.path.basename(sys.executable or "")


def _hook_into_uwsgi() -> bool:
    """Register the post-fork hook; False if the ``uwsgi`` module does not exist (yet)."""
    try:
        import uwsgi  # only exists inside uWSGI
    except ImportError:
        return False
    if uwsgi.masterpid():
        # uwsgidecorators keeps a chain that the app's own @postfork functions join.
        from uwsgidecorators import postfork

        postfork(_uwsgi_postfork)
    else:  # no master: uwsgidecorators refuses to load; chain the raw hook ourselves
        previous = getattr(uwsgi, "post_fork_hook", None)

        def chained() -> None:
            if callable(previous):
                previous()
            _uwsgi_postfork()

        uwsgi.post_fork_hook = chained
    if uwsgi.worker_id() > 0:  # already in a worker (lazy-apps, no master): post-fork has run
        _uwsgi_postfork()
    return True


class _UwsgiModuleWatch(importlib.abc.MetaPathFinder):
    """Finds nothing; on the first import after uWSGI created its module, installs the hook."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if "uwsgi" in sys.modules:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self)
            _hook_into_uwsgi()
        return None


_parked_pid: int | None = None  # the process whose export threads were stopped


def _park_export_threads() -> None:
    """Stop the export threads of this (uWSGI master) process; queues and providers stay.

    Each thread exports what is queued and exits.  Telemetry the master emits later (while
    importing the app) stays queued: workers start with empty queues (else every worker would
    export it), and a master that serves requests itself (no ``master`` option) restarts its
    threads in :func:`_uwsgi_postfork`.
    """
    global _parked_pid
    pipeline = _pipeline
    if pipeline is None:
        return
    _parked_pid = os.getpid()
    for proc in _span_and_log_processors(pipeline):
        thread = getattr(proc, "_worker_thread", None)
        if thread is None or not hasattr(proc, "_shutdown"):
            continue
        proc._shutdown = True  # noqa: SLF001 - ends the worker loop after a final export
        proc._worker_awaken.set()  # noqa: SLF001
        thread.join(2.0)
        proc._shutdown = False  # noqa: SLF001
        proc._worker_awaken = threading.Event()  # noqa: SLF001
    for reader in _metric_readers(pipeline):
        thread = getattr(reader, "_daemon_thread", None)
        if thread is None:
            continue
        reader._shutdown_event.set()  # noqa: SLF001 - the ticker collects once more and exits
        thread.join(2.0)
        reader._shutdown_event = threading.Event()  # noqa: SLF001


def _uwsgi_postfork() -> None:
    global _parked_pid
    if _parked_pid == os.getpid():
        # No master: this process forked nothing and serves requests itself.
        _parked_pid = None
        pipeline = _pipeline
        if pipeline is not None:
            _restart_export_threads(pipeline)
        return
    reinit_after_fork(sdk_hooks_ran=False)


def _restart_export_threads(pipeline: _Pipeline) -> None:
    """New export threads over the existing queues (nothing queued is dropped)."""
    for proc in _span_and_log_processors(pipeline):
        if hasattr(proc, "worker") and hasattr(proc, "_worker_thread"):
            proc._worker_thread = threading.Thread(  # noqa: SLF001
                name=proc._worker_thread.name,  # noqa: SLF001
                target=proc.worker,
                daemon=True,
            )
            proc._worker_thread.start()  # noqa: SLF001
    for reader in _metric_readers(pipeline):
        reinit = getattr(reader, "_at_fork_reinit", None)
        if getattr(reader, "_daemon_thread", None) is not None and callable(reinit):
            reinit()


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
