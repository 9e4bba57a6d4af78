"""Run a callback right after a module has been imported for the first time.

Lazy instrumentation hangs on this: an instrumentor is loaded when the app imports its
library, so a library that is installed but never imported costs nothing. The callback runs
after the module's code has fully executed and before the importing statement gets the module
back (`from flask import Flask` already sees the patched class), while the import system
still holds that module's lock, so no other thread can use the module un-instrumented.

Depends on nothing of ours: callers handle their own errors (this module also catches them,
so an import never fails because of a callback).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_waiting: dict[str, list[_Watch]] = {}
_finder: _Finder | None = None


class _Watch:
    """One callback waiting for the first of several modules; fires at most once."""

    __slots__ = ("callback", "fired", "modules")

    def __init__(self, modules: tuple[str, ...], callback: Callable[[], object]) -> None:
        self.modules = modules
        self.callback = callback
        self.fired = False


def when_imported(modules: Iterable[str], callback: Callable[[], object]) -> bool:
    """Call `callback` once, when the first of `modules` has been imported.

    If one of them is already in sys.modules the callback runs now; returns True in that case
    and False when it was deferred.
    """
    names = tuple(modules)
    watch = _Watch(names, callback)
    with _lock:
        loaded = any(name in sys.modules for name in names)
        if not loaded:
            for name in names:
                _waiting.setdefault(name, []).append(watch)
            _install_finder()
            return False
        watch.fired = True
    _run(watch)
    return True


def pending() -> list[str]:
    """The module names still watched (for diagnostics and tests)."""
    with _lock:
        return sorted(name for name, watches in _waiting.items() if watches)


def _install_finder() -> None:
    global _finder
    if _finder is None or _finder not in sys.meta_path:
        _finder = _Finder()
        sys.meta_path.insert(0, _finder)


def _module_imported(name: str) -> None:
    with _lock:
        watches = _waiting.pop(name, [])
        due = [w for w in watches if not w.fired]
        for watch in due:
            watch.fired = True
            for other in watch.modules:
                if other != name and other in _waiting:
                    _waiting[other] = [w for w in _waiting[other] if w is not watch]
                    if not _waiting[other]:
                        del _waiting[other]
    for watch in due:
        _run(watch)


def _run(watch: _Watch) -> None:
    try:
        watch.callback()
    except Exception:  # noqa: BLE001 - an import must never fail because of our callback
        _log.exception("callback after importing %s failed", "/".join(watch.modules))


class _Finder(MetaPathFinder):
    """Finds watched modules through the other finders and wraps their loader."""

    def __init__(self) -> None:
        self._local = threading.local()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname not in _waiting:  # the fast path for every other import
            return None
        busy: set[str] = self._local.__dict__.setdefault("busy", set())
        if fullname in busy:
            return None
        busy.add(fullname)
        try:
            spec = _find_with_others(self, fullname, path, target)
        finally:
            busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _NotifyingLoader(spec.loader, fullname)
        return spec


def _find_with_others(
    me: MetaPathFinder, fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> ModuleSpec | None:
    for finder in list(sys.meta_path):
        if finder is me:
            continue
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        spec: ModuleSpec | None = find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


class _NotifyingLoader(Loader):
    """Delegates to the real loader; after the module executed, fires the watches."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        # The real loader sees its own spec object: only the loader attribute differs.
        spec.loader = self._loader
        try:
            module: ModuleType | None = self._loader.create_module(spec)
        finally:
            spec.loader = self
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Leave no trace: the module keeps the real loader (importlib.resources, pkgutil,
        # reloads all look at it).
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        self._loader.exec_module(module)
        _module_imported(self._name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)
