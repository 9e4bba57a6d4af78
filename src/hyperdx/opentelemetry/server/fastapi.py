"""FastAPI: the Starlette wrapping, with FastAPI's route flattening and exception placement."""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined,unused-ignore]
from opentelemetry.util.http import ExcludeList, get_excluded_urls, parse_excluded_urls

from hyperdx.opentelemetry.server import semconv
from hyperdx.opentelemetry.server.faults import fault
from hyperdx.opentelemetry.server.route_cache import bound
from hyperdx.opentelemetry.server.starlette import _STATE, Framework, record_exceptions
from hyperdx.opentelemetry.server.telemetry import ServerTelemetry


class _FastAPI(Framework):
    def _flatten(self, routes: Any) -> Any:
        import fastapi.routing

        iterate = getattr(fastapi.routing, "iter_route_contexts", None)
        if iterate is not None:
            return list(iterate(routes))
        flat = []
        for route in routes:
            if hasattr(route, "effective_route_contexts"):
                flat.extend(route.effective_route_contexts())
            else:
                flat.append(route)
        return flat

    def _matcher(self, route: Any) -> Any:
        """As contrib: starlette's ``Route.matches`` for a Route (also an APIRoute), else the
        route's own ``matches``."""
        route_cls = _route_cls()
        if isinstance(route, route_cls):
            return bound(route_cls.matches, route)
        return route.matches

    def _version(self, app: Any) -> Any:
        version = getattr(getattr(app, "router", None), "_get_routes_version", None)
        return version() if version is not None else None

    def details(self, route: str | None, method: Any) -> tuple[str, dict[str, Any]]:
        if method not in semconv.KNOWN_METHODS:  # a known one is its own normalised form
            method = semconv.sanitize_method(method.strip())
            if method == "_OTHER":
                method = "HTTP"
        attrs: dict[str, Any] = {"http.route": route} if route else {}
        if method and route:
            return f"{method} {route}", attrs
        return (route or method), attrs

    def excluded(self, config: dict[str, Any]) -> ExcludeList:
        given = config.get("excluded_urls")
        return get_excluded_urls("FASTAPI") if given is None else parse_excluded_urls(given)

    def telemetry(self, config: dict[str, Any]) -> ServerTelemetry:
        mode = semconv.current_mode()
        return ServerTelemetry(
            "opentelemetry.instrumentation.fastapi",
            "fastapi",
            config.get("tracer_provider"),
            config.get("meter_provider"),
            schema_url=mode.schema_url,
            headers=semconv.HeaderCapture(
                config.get("http_capture_headers_server_request"),
                config.get("http_capture_headers_server_response"),
                config.get("http_capture_headers_sanitize_fields"),
            ),
        )

    def wrap_stack(self, app: Any, stack: Any, config: dict[str, Any]) -> Any:
        """As contrib: ServerErrorMiddleware(ours(ServerErrorMiddleware(recorder(inner))))."""
        from starlette.middleware.errors import ServerErrorMiddleware

        if not isinstance(stack, ServerErrorMiddleware):
            fault("fastapi.middleware_stack", TypeError(f"unexpected stack {type(stack)!r}"))
            return stack
        inner = ServerErrorMiddleware(
            app=record_exceptions(stack.app), handler=stack.handler, debug=stack.debug
        )
        _trace_background_tasks(self.tracer(config))
        _quiet_native_telemetry(app)
        return ServerErrorMiddleware(app=self.middleware(app, inner, config))  # type: ignore[arg-type]

    def tracer(self, config: dict[str, Any]) -> trace.Tracer:
        from hyperdx.opentelemetry.server.telemetry import contrib_version

        return trace.get_tracer(
            "opentelemetry.instrumentation.fastapi",
            contrib_version("fastapi"),
            config.get("tracer_provider"),
            schema_url=semconv.current_mode().schema_url,
        )


@functools.cache
def _route_cls() -> Any:
    """starlette's Route (imported once, not per route and request)."""
    from starlette.routing import Route

    return Route


def _quiet_native_telemetry(app: Any) -> None:
    """FastAPI >= 0.16x has its own telemetry and stands down when it finds contrib's ASGI
    middleware in the stack (its traces, logs and metrics); it cannot recognise ours, so we
    tell it the same way its config does. Read per request, so the first one is covered too."""
    config = app.__dict__.get("_telemetry")
    if isinstance(config, dict):
        config.update(tracing=False, logs=False, metrics=False)


def _fastapi_cls() -> type:
    from fastapi import FastAPI

    return FastAPI


FASTAPI = _FastAPI("fastapi", _fastapi_cls)


def _trace_background_tasks(tracer: trace.Tracer) -> None:
    """``BackgroundTask <name>`` spans, as contrib's FastAPI instrumentation adds."""
    from starlette.background import BackgroundTask

    if "_hyperdx_original_call" in BackgroundTask.__dict__ or hasattr(
        BackgroundTask, "_otel_original_call"
    ):
        return
    original = BackgroundTask.__call__

    async def traced_call(self: Any) -> None:
        name = getattr(self.func, "__name__", self.func.__class__.__name__)
        with tracer.start_as_current_span(f"BackgroundTask {name}"):
            return await original(self)

    BackgroundTask._hyperdx_original_call = original  # type: ignore[attr-defined]
    BackgroundTask.__call__ = traced_call  # type: ignore[method-assign]


def _untrace_background_tasks() -> None:
    from starlette.background import BackgroundTask

    original = BackgroundTask.__dict__.get("_hyperdx_original_call")
    if original is not None:
        BackgroundTask.__call__ = original  # type: ignore[method-assign]
        del BackgroundTask._hyperdx_original_call  # type: ignore[attr-defined]


class FastAPIInstrumentor(BaseInstrumentor):
    """Drop-in for contrib's FastAPIInstrumentor (same dependencies and keyword arguments)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("fastapi ~= 0.92",)

    def _instrument(self, **kwargs: Any) -> None:
        FASTAPI.install(dict(kwargs))

    def _uninstrument(self, **kwargs: Any) -> None:
        FASTAPI.uninstall()
        _untrace_background_tasks()

    @staticmethod
    def instrument_app(app: Any, **kwargs: Any) -> None:
        """Instrument one app (before it serves its first request)."""
        if getattr(app, "_is_instrumented_by_opentelemetry", False):
            return
        if FASTAPI.original is None:
            FASTAPI.install({})
            FASTAPI.config = None
        app.__dict__[_STATE] = dict(kwargs)
