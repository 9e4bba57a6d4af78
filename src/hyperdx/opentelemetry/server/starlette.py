"""Starlette and FastAPI: our ASGI middleware placed by a class-level ``build_middleware_stack``.

Contrib replaces the app class (so apps created earlier are missed) and matches the route a
second time per request; here ``build_middleware_stack`` is wrapped once on the class, so every
app (also one created before instrumentation, as long as it has not served a request) gets the
middleware when its stack is built, with per-app state made once. An app contrib instruments
itself (``FastAPIInstrumentor.instrument_app(app)``) is left to contrib: one server span.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined,unused-ignore]
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.http import ExcludeList, get_excluded_urls

from hyperdx.opentelemetry.server import semconv
from hyperdx.opentelemetry.server.asgi import OpenTelemetryASGIMiddleware
from hyperdx.opentelemetry.server.faults import fault
from hyperdx.opentelemetry.server.route_cache import RouteTable
from hyperdx.opentelemetry.server.telemetry import ServerTelemetry

_STATE = "_hyperdx_server"
_TABLE = "_hyperdx_routes"
_MISSING = object()
_LEGACY_SCHEMA = "https://opentelemetry.io/schemas/1.11.0"


@functools.cache
def _match_values() -> tuple[Any, Any]:
    """starlette's Match.FULL and Match.PARTIAL (imported once, not per request)."""
    from starlette.routing import Match

    return Match.FULL, Match.PARTIAL


def _lookup(routes: list[tuple[Any, Any]], scope: dict[str, Any]) -> str | None:
    """contrib's lookup: the first full match's path (the request path for a route without
    one), else the last partial match's path (a 405), else None."""
    full, partial = _match_values()
    route: str | None = None
    for matches, candidate in routes:
        match, _ = matches(scope)
        if match == full:
            try:
                route = candidate.path
            except AttributeError:
                route = scope.get("path")
            break
        if match == partial:
            route = candidate.path
    return route


def _includes_routers(route: Any) -> bool:
    """FastAPI's included-router node: its routes can change without the app's list changing."""
    return hasattr(route, "effective_route_contexts")


class Framework:
    """What differs between the FastAPI and the Starlette flavours (contrib's choices)."""

    def __init__(self, name: str, owner: Callable[[], type]) -> None:
        self.name = name
        self.owner = owner  # the class whose build_middleware_stack is wrapped
        self.config: dict[str, Any] | None = None
        self.original: Any = None

    # route matching -------------------------------------------------------------------------

    def table(self, app: Any) -> RouteTable:
        """The app's matchable routes and route memo, made again whenever its routes change."""
        routes = app.routes
        table = app.__dict__.get(_TABLE)
        if (
            table is not None
            and table.source == (routes if type(routes) is list else list(routes))
            and (table.version is None or table.version == self._version(app))
        ):
            return table  # the list comparison is by identity first: C speed for the same routes
        source = list(routes)
        flat = list(self._flatten(source))
        version = self._version(app) if any(map(_includes_routers, source)) else None
        table = RouteTable(source, version, [(self._matcher(r), r) for r in flat])
        app.__dict__[_TABLE] = table
        return table

    def _flatten(self, routes: Any) -> Any:
        return routes

    def _version(self, app: Any) -> Any:
        """A number that changes when routes inside included routers change (FastAPI)."""
        return None

    def _matcher(self, route: Any) -> Any:
        """What contrib calls to match ``route`` (its ``matches``, looked up once)."""
        return route.matches

    def route(self, scope: dict[str, Any]) -> str | None:
        """contrib's route lookup, memoised where its answer depends on the memo key only."""
        table = self.table(scope["app"])
        if table.memo is None:
            return _lookup(table.routes, scope)
        key = table.key(scope)
        if key is None:
            return _lookup(table.routes, scope)
        try:
            found = table.memo.get(key, _MISSING)
        except TypeError:  # an unhashable method or root path: not memoised
            return _lookup(table.routes, scope)
        if found is _MISSING:
            found = _lookup(table.routes, scope)
            table.remember(key, found)
        return found  # type: ignore[return-value]

    def span_details(self, scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(span name, ``{"http.route": route}``), remembered with the route: the same tuple
        (its dict shared, never changed) for every request of a memoised key."""
        table = self.table(scope["app"])
        key = table.key(scope) if table.memo is not None else None
        if key is not None:
            try:
                found = table.details.get(key)
            except TypeError:  # an unhashable method or root path: not memoised
                found = key = None
            if found is not None:
                return found
        found = self.details(self.route(scope), scope.get("method", ""))
        if key is not None:
            table.remember_details(key, found)
        return found

    def details(self, route: str | None, method: Any) -> tuple[str, dict[str, Any]]:
        """The span name and extra attributes of a request of ``route`` (contrib's rule)."""
        attrs: dict[str, Any] = {"http.route": route} if route else {}
        if method and route:
            return f"{method} {route}", attrs
        return (route or method), attrs

    # the middleware ------------------------------------------------------------------------

    def excluded(self, config: dict[str, Any]) -> ExcludeList:
        return get_excluded_urls(self.name.upper())

    def telemetry(self, config: dict[str, Any]) -> ServerTelemetry:
        t = ServerTelemetry(
            f"opentelemetry.instrumentation.{self.name}",
            self.name,
            config.get("tracer_provider"),
            config.get("meter_provider"),
            schema_url=_LEGACY_SCHEMA,
        )
        return t

    def middleware(
        self, app: Any, inner: Any, config: dict[str, Any]
    ) -> OpenTelemetryASGIMiddleware:
        return OpenTelemetryASGIMiddleware(
            inner,
            excluded_urls=self.excluded(config),
            default_span_details=self.span_details,
            server_request_hook=config.get("server_request_hook"),
            client_request_hook=config.get("client_request_hook"),
            client_response_hook=config.get("client_response_hook"),
            telemetry=self.telemetry(config),
        )

    def wrap_stack(self, app: Any, stack: Any, config: dict[str, Any]) -> Any:
        """Starlette: right inside ServerErrorMiddleware, around the user's middleware."""
        from starlette.middleware.errors import ServerErrorMiddleware

        if isinstance(stack, ServerErrorMiddleware):
            stack.app = self.middleware(app, stack.app, config)  # type: ignore[assignment]
            return stack
        return self.middleware(app, stack, config)

    def build(self, app: Any) -> Any:
        stack = self.original(app)
        try:
            state = app.__dict__.get(_STATE)
            if state is None:
                if getattr(app, "_is_instrumented_by_opentelemetry", False):
                    app.__dict__[_STATE] = False  # contrib instruments this app itself
                    return stack
                if self.config is None:
                    return stack
                state = self.config
            if state is False or not self.applies_to(app):
                return stack
            wrapped = self.wrap_stack(app, stack, state)
            app.__dict__[_STATE] = state
            app._is_instrumented_by_opentelemetry = True  # contrib's instrument_app skips it
            return wrapped
        except Exception as exc:  # noqa: BLE001 - the app runs untraced rather than not at all
            fault(f"{self.name}.build_middleware_stack", exc)
            return stack

    def applies_to(self, app: Any) -> bool:
        return True

    def install(self, config: dict[str, Any]) -> None:
        self.config = config
        owner = self.owner()
        if self.original is None:
            self.original = owner.__dict__["build_middleware_stack"]
            framework = self

            def build_middleware_stack(app: Any) -> Any:
                return framework.build(app)

            owner.build_middleware_stack = build_middleware_stack  # type: ignore[attr-defined]

    def uninstall(self) -> None:
        self.config = None
        if self.original is not None:
            self.owner().build_middleware_stack = self.original  # type: ignore[attr-defined]
            self.original = None


class _Starlette(Framework):
    def applies_to(self, app: Any) -> bool:
        import sys

        fastapi = sys.modules.get("fastapi")
        return fastapi is None or not isinstance(app, fastapi.FastAPI)


def _starlette_cls() -> type:
    from starlette.applications import Starlette

    return Starlette


STARLETTE = _Starlette("starlette", _starlette_cls)


class StarletteInstrumentor(BaseInstrumentor):
    """Drop-in for contrib's StarletteInstrumentor (same dependencies and keyword arguments)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("starlette >= 0.13",)

    def _instrument(self, **kwargs: Any) -> None:
        STARLETTE.install(dict(kwargs))

    def _uninstrument(self, **kwargs: Any) -> None:
        STARLETTE.uninstall()

    @staticmethod
    def instrument_app(app: Any, **kwargs: Any) -> None:
        """Instrument one app (before it serves its first request)."""
        if getattr(app, "_is_instrumented_by_opentelemetry", False):
            return
        if STARLETTE.original is None:
            STARLETTE.install({})
            STARLETTE.config = None
        app.__dict__[_STATE] = dict(kwargs)


def record_exceptions(app: Any) -> Any:
    """FastAPI: exceptions reach the server span before ServerErrorMiddleware answers 500."""

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        except Exception as exc:
            span = trace.get_current_span()
            if span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise

    return recording


__all__ = ["STARLETTE", "Framework", "StarletteInstrumentor", "record_exceptions", "semconv"]
