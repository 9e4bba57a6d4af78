"""Our own server request path: lean WSGI/ASGI instrumentation that replaces contrib's.

Contrib's Flask/Django/FastAPI/Starlette instrumentations are the oracle for what is produced
(span name, kind, attributes, status, exception events, metrics); this package produces the same
telemetry with far less work per request. ``HYPERDX_SERVER_INSTRUMENTATION=contrib`` restores
contrib's instrumentations completely.

Contract for the loader (distro/instrumentation): for each contrib entry point named in
:data:`LEAN_FRAMEWORKS`, :func:`lean_instrumentor` returns our instrumentor to activate instead
(``None`` means: load contrib's as usual).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from hyperdx.opentelemetry.server.faults import problems

if TYPE_CHECKING:
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )

__all__ = [
    "LEAN_FRAMEWORKS",
    "OpenTelemetryASGIMiddleware",
    "OpenTelemetryWSGIMiddleware",
    "lean_instrumentor",
    "problems",
    "server_mode",
]

LEAN_FRAMEWORKS: frozenset[str] = frozenset({"flask", "django", "fastapi", "starlette"})

_INSTRUMENTORS = {
    "flask": ("hyperdx.opentelemetry.server.flask", "FlaskInstrumentor"),
    "django": ("hyperdx.opentelemetry.server.django", "DjangoInstrumentor"),
    "fastapi": ("hyperdx.opentelemetry.server.fastapi", "FastAPIInstrumentor"),
    "starlette": ("hyperdx.opentelemetry.server.starlette", "StarletteInstrumentor"),
}


def server_mode() -> str:
    """ "lean" (default) or "contrib", from HYPERDX_SERVER_INSTRUMENTATION.

    The configured pipeline's settings win (they also carry a code option); before
    configure_opentelemetry() the environment is read, and a bad value is reported once.
    """
    from hyperdx.opentelemetry import diagnostics, lifecycle, options

    pipeline = lifecycle.current()
    if pipeline is not None:
        return str(pipeline.settings.server_instrumentation.value)
    mode, warnings = options.server_instrumentation()
    for warning in warnings:
        diagnostics.warn("%s", warning)
    return mode


def lean_instrumentor(name: str) -> BaseInstrumentor | None:
    """Our instrumentor replacing contrib's entry point ``name``; None: use contrib's."""
    if name not in LEAN_FRAMEWORKS or server_mode() != "lean":
        return None
    module_name, class_name = _INSTRUMENTORS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:  # the framework itself is not installed
        return None
    instrumentor: BaseInstrumentor = getattr(module, class_name)()
    return instrumentor


def __getattr__(name: str) -> object:
    # The middlewares import the SDK API; load them only when asked for.
    if name == "OpenTelemetryWSGIMiddleware":
        from hyperdx.opentelemetry.server.wsgi import OpenTelemetryWSGIMiddleware

        return OpenTelemetryWSGIMiddleware
    if name == "OpenTelemetryASGIMiddleware":
        from hyperdx.opentelemetry.server.asgi import OpenTelemetryASGIMiddleware

        return OpenTelemetryASGIMiddleware
    raise AttributeError(name)
