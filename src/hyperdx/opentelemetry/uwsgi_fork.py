"""uWSGI: re-initialise telemetry in every worker from uWSGI's own post-fork hook.

uWSGI forks without running Python's at-fork hooks (unless ``py-call-uwsgi-fork-hooks``), so
the hook installed here (chained, never replacing the app's) is what restarts the export threads
and gives each worker its identity.  ``install`` is called once per process by ``forking``.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from hyperdx.opentelemetry.pipeline_parts import Pipeline, metric_readers, span_and_log_processors

_current: Callable[[], Pipeline | None] = lambda: None  # noqa: E731 - set by install()
_reinit: Callable[[], None] = lambda: None  # noqa: E731 - set by install()


def install(current: Callable[[], Pipeline | None], reinit: Callable[[], None]) -> None:
    """Inside uWSGI, re-initialise from uWSGI's own post-fork hook (chained, not replaced).

    Under ``opentelemetry-instrument`` we are configured from ``sitecustomize`` in the uWSGI
    master, before uWSGI has created its ``uwsgi`` module.  uWSGI then forks from C without
    taking the GIL (unless ``py-call-uwsgi-fork-hooks``): a worker forked while one of our
    export threads held the GIL would hang forever.  So the master's export threads are
    stopped here, and every worker starts its own; the hook is installed by the first import
    that happens after the ``uwsgi`` module exists (the app's, in the master or, with
    lazy-apps, in the worker).
    """
    global _current, _reinit
    _current, _reinit = current, reinit
    if _hook_into_uwsgi() or not _inside_uwsgi():
        return
    _park_export_threads()
    sys.meta_path.insert(0, _UwsgiModuleWatch())


def _inside_uwsgi() -> bool:
    return "uwsgi" in os.path.basename(sys.executable or "")


_hooked = False


def _hook_into_uwsgi(decorators: Any = None) -> bool:
    """Register the post-fork hook once; False if the ``uwsgi`` module does not exist (yet).

    ``decorators`` is the ``uwsgidecorators`` module when it has just been executed.
    """
    global _hooked
    try:
        import uwsgi  # only exists inside uWSGI
    except ImportError:
        return False
    if _hooked:
        return True
    _hooked = True
    if uwsgi.masterpid():
        # uwsgidecorators keeps a chain that the app's own @postfork functions join; ours is
        # first in it, so the pipeline is re-initialised before the app's hooks run.
        if decorators is None:
            decorators = importlib.import_module("uwsgidecorators")
        decorators.postfork(_uwsgi_postfork)
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
    """Finds nothing; on the first import after uWSGI created its module, installs the hook.

    When that first import is ``uwsgidecorators`` itself (an app starting with
    ``from uwsgidecorators import postfork``), importing it from here would execute it twice:
    the import in progress runs it again, which resets its hook chain and drops our hook.  So
    that module is loaded normally and the hook joins its chain right after it has run.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if "uwsgi" not in sys.modules:
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        if fullname == "uwsgidecorators":
            spec = importlib.util.find_spec(fullname)
            if spec is not None and spec.loader is not None:
                spec.loader = _HookAfterExec(spec.loader)
                return spec
        _hook_into_uwsgi()
        return None


class _HookAfterExec(importlib.abc.Loader):
    """Loads ``uwsgidecorators`` with its own loader, then installs our post-fork hook."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _hook_into_uwsgi(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename... (tracebacks)
        return getattr(self._loader, name)


_parked_pid: int | None = None  # the process whose export threads were stopped


def _park_export_threads() -> None:
    """Stop the export threads of this (uWSGI master) process; queues and providers stay.

    Each thread exports what is queued and exits.  Telemetry the master emits later (while
    importing the app) stays queued: workers start with empty queues (else every worker would
    export it), and a master that serves requests itself (no ``master`` option) restarts its
    threads in :func:`_uwsgi_postfork`.
    """
    global _parked_pid
    pipeline = _current()
    if pipeline is None:
        return
    _parked_pid = os.getpid()
    for proc in span_and_log_processors(pipeline):
        batcher = getattr(proc, "_batcher", None)
        if batcher is not None:
            _park_batcher(batcher)
            continue
        thread = getattr(proc, "_worker_thread", None)
        if thread is None or not hasattr(proc, "_shutdown"):
            continue
        proc._shutdown = True  # noqa: SLF001 - ends the worker loop after a final export
        proc._worker_awaken.set()  # noqa: SLF001
        thread.join(2.0)
        proc._shutdown = False  # noqa: SLF001
        proc._worker_awaken = threading.Event()  # noqa: SLF001
    for reader in metric_readers(pipeline):
        thread = getattr(reader, "_daemon_thread", None)
        if thread is None:
            continue
        reader._shutdown_event.set()  # noqa: SLF001 - the ticker collects once more and exits
        thread.join(2.0)
        reader._shutdown_event = threading.Event()  # noqa: SLF001


def _park_batcher(batcher: Any) -> None:
    """Stop the export thread of one of our batch processors (``export._batch.Batcher``),
    then export what it had queued from this thread; the queue and the processor stay."""
    thread = batcher._thread  # noqa: SLF001
    batcher._shutdown = True  # noqa: SLF001 - the loop exits at its next wake-up
    batcher._wake.set()  # noqa: SLF001
    thread.join(2.0)
    batcher._shutdown = False  # noqa: SLF001
    batcher._wake.clear()  # noqa: SLF001
    batcher.force_flush(2000)


def _uwsgi_postfork() -> None:
    global _parked_pid
    if _parked_pid == os.getpid():
        # No master: this process forked nothing and serves requests itself.
        _parked_pid = None
        pipeline = _current()
        if pipeline is not None:
            _restart_export_threads(pipeline)
        return
    _reinit()


def _restart_export_threads(pipeline: Pipeline) -> None:
    """New export threads over the existing queues (nothing queued is dropped)."""
    for proc in span_and_log_processors(pipeline):
        batcher = getattr(proc, "_batcher", None)
        if batcher is not None:
            if not batcher._thread.is_alive():  # noqa: SLF001
                batcher._start()  # noqa: SLF001
            continue
        if hasattr(proc, "worker") and hasattr(proc, "_worker_thread"):
            proc._worker_thread = threading.Thread(  # noqa: SLF001
                name=proc._worker_thread.name,  # noqa: SLF001
                target=proc.worker,
                daemon=True,
            )
            proc._worker_thread.start()  # noqa: SLF001
    for reader in metric_readers(pipeline):
        reinit = getattr(reader, "_at_fork_reinit", None)
        if getattr(reader, "_daemon_thread", None) is not None and callable(reinit):
            reinit()
