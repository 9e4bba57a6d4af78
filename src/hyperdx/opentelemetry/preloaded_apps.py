"""Instrument web app objects that were created before auto-instrumentation was activated."""

from __future__ import annotations

import sys
from typing import Any


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
