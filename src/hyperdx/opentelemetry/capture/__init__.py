"""Advanced network capture (``HYPERDX_ENABLE_ADVANCED_NETWORK_CAPTURE``).

Adds ``http.request.header.<name>``, ``http.response.header.<name>``, ``http.request.body`` and
``http.response.body`` (plus ``http.url``) to HTTP server and client spans, capped and redacted,
without changing a byte of what the application sends or receives.

The distro calls :func:`instrumentor_kwargs` for each instrumentor it activates (hooks are merged
with the user's, never replacing them: see :func:`merge_kwargs`) and :func:`install` once for what
cannot be a hook (WSGI body tees, the aiohttp server middleware).
"""

from __future__ import annotations

import atexit
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from . import aiohttp_server as _aiohttp_server
from . import wsgi as _wsgi
from ._engine import Deferred, Engine, capture_errors, switch
from .config import CaptureConfig
from .redact import REDACTED, Redactor

__all__ = [
    "REDACTED",
    "CaptureConfig",
    "Redactor",
    "capture_errors",
    "install",
    "instrumentor_kwargs",
    "merge_kwargs",
    "uninstall",
]


@functools.lru_cache(maxsize=8)
def _engine_for(config: CaptureConfig) -> Engine:
    return Engine(config)


def instrumentor_kwargs(name: str, config: CaptureConfig) -> dict[str, Any]:
    """Extra ``instrument()`` kwargs for the instrumentor registered under entry point ``name``.

    Only hooks (and, for aiohttp-client, one TraceConfig): never ``excluded_urls``, never
    header-capture settings, so the user's environment keeps its meaning.
    """
    if not config.enabled:
        return {}
    engine = _engine_for(config)
    if name in ("requests",):
        from . import requests

        return requests.hooks(engine)
    if name == "urllib3":
        from . import urllib3

        return urllib3.hooks(engine)
    if name == "urllib":
        from . import urllib

        return urllib.hooks(engine)
    if name == "httpx":
        from . import httpx

        return httpx.hooks(engine)
    if name == "aiohttp-client":
        from . import aiohttp_client

        kwargs = aiohttp_client.hooks(engine)
        kwargs["trace_configs"] = [aiohttp_client.trace_config(engine)]
        return kwargs
    if name == "flask":
        return _wsgi.flask_hooks(engine)
    if name == "django":
        return _wsgi.django_hooks(engine)
    if name in ("fastapi", "starlette", "asgi"):
        from . import asgi

        return asgi.hooks(engine)
    return {}


def _chain(user: Callable[..., Any], ours: Callable[..., Any]) -> Callable[..., Any]:
    """Run the user's hook first, then ours; a failing user hook still raises as before."""
    if inspect.iscoroutinefunction(user) or inspect.iscoroutinefunction(ours):

        async def chained_async(*args: Any, **kwargs: Any) -> None:
            result = user(*args, **kwargs)
            if inspect.isawaitable(result):
                await result
            mine = ours(*args, **kwargs)
            if inspect.isawaitable(mine):
                await mine

        return chained_async

    def chained(*args: Any, **kwargs: Any) -> None:
        try:
            user(*args, **kwargs)
        finally:
            ours(*args, **kwargs)

    return chained


def merge_kwargs(user: Mapping[str, Any], ours: Mapping[str, Any]) -> dict[str, Any]:
    """Combine the user's instrument() kwargs with ours: hooks are chained, lists concatenated,
    any other user value wins."""
    merged = dict(user)
    for key, value in ours.items():
        existing = merged.get(key)
        if existing is None:
            merged[key] = value
        elif key.endswith("_hook") and callable(existing):
            merged[key] = _chain(existing, value)
        elif key == "trace_configs":
            merged[key] = list(existing) + list(value)
    return merged


_installed: CaptureConfig | None = None


def install(config: CaptureConfig) -> None:
    """Install the parts that are not per-instrumentor kwargs. Idempotent; no-op when disabled."""
    global _installed
    if not config.enabled:
        return
    engine = _engine_for(config)
    switch.off = False
    _wsgi.install(engine)
    _aiohttp_server.install(engine)
    if _installed is None:
        atexit.register(Deferred.release_all)
    _installed = config


def uninstall() -> None:
    """Undo :func:`install` and end any span still waiting for its body."""
    global _installed
    switch.off = True
    _wsgi.uninstall()
    _aiohttp_server.uninstall()
    Deferred.release_all()
    if _installed is not None:
        atexit.unregister(Deferred.release_all)
    _installed = None
