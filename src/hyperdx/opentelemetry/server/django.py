"""Django: one middleware (first in ``MIDDLEWARE``, where contrib puts its own).

Compared with contrib's middleware: ``request.build_absolute_uri()`` is computed once and only when
exclusions are configured (contrib computes it four times per request), the URL route used for
the span name is cached per path, header-capture settings are compiled once, and attributes are
set once at span start. WSGI and ASGI (``ASGIRequest``) requests are both handled.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Collection
from timeit import default_timer
from typing import Any

from opentelemetry import context
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined,unused-ignore]
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.util.http import (
    ExcludeList,
    get_excluded_urls,
    get_traced_request_attrs,
    parse_excluded_urls,
)

from hyperdx.opentelemetry.server import asgi, semconv, wsgi
from hyperdx.opentelemetry.server.faults import fault
from hyperdx.opentelemetry.server.telemetry import Cell, ServerTelemetry

_logger = logging.getLogger(__name__)
_MIDDLEWARE = "hyperdx.opentelemetry.server.django.DjangoMiddleware"
_CONTRIB_MIDDLEWARE = (
    "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"
)
_SQLCOMMENTER = (
    "opentelemetry.instrumentation.django.middleware.sqlcommenter_middleware.SqlCommenter"
)
_STATE = "_hyperdx_server"


class _Config:
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.telemetry = ServerTelemetry(
            "opentelemetry.instrumentation.django",
            "django",
            kwargs.get("tracer_provider"),
            kwargs.get("meter_provider"),
        )
        given = kwargs.get("excluded_urls")
        self.excluded: ExcludeList = (
            get_excluded_urls("DJANGO") if given is None else parse_excluded_urls(given)
        )
        self.has_exclusions = bool(getattr(self.excluded, "_excluded_urls", True))
        self.request_hook: Callable[..., None] | None = kwargs.get("request_hook")
        self.response_hook: Callable[..., None] | None = kwargs.get("response_hook")
        self.traced_attrs = get_traced_request_attrs("DJANGO")


_config: _Config | None = None


class _Request:
    __slots__ = ("attrs", "cell", "exception", "span", "start", "token")

    def __init__(self, span: Any, token: object, attrs: dict[str, Any], cell: Cell) -> None:
        self.span = span
        self.token = token
        self.attrs = attrs
        self.cell = cell  # the request's active-requests count (ActiveRequests.cell)
        self.exception: BaseException | None = None
        self.start = default_timer()


@functools.lru_cache(maxsize=2048)
def _route_name(method: str, raw_method: str, path: str, urlconf: Any) -> str:
    """``METHOD route`` as contrib names the span (cached per path: resolving is costly)."""
    from django.urls import Resolver404, resolve

    try:
        match = resolve(path, urlconf)
    except Resolver404:
        return raw_method
    route = getattr(match, "route", None)
    if route:
        return f"{method} {route}"
    name = getattr(match, "url_name", None)
    if name:
        return f"{method} {name}"
    return raw_method


def _span_name(request: Any) -> str:
    raw = request.method
    method = semconv.sanitize_method(raw.strip())
    if method == "_OTHER":
        return "HTTP"
    match = request.resolver_match
    if match:
        route = getattr(match, "route", None)
        if route:
            return f"{method} {route}"
        name = getattr(match, "url_name", None)
        return f"{method} {name}" if name else str(raw)
    return _route_name(method, raw, request.path, _urlconf())


def _urlconf() -> Any:
    """The URLconf the request will be resolved against, as ``get_urlconf()`` returns it here.

    Django's handler calls ``set_urlconf(settings.ROOT_URLCONF)`` before the middleware chain,
    so at ``process_request`` the two are the same; reading the setting skips asgiref's
    ``Local`` (~7 us per request in ``get_urlconf``).
    """
    return _django_settings().ROOT_URLCONF


@functools.lru_cache(maxsize=1)
def _django_settings() -> Any:
    from django.conf import settings

    return settings


_asgi_request_type: Any = None


def _is_asgi(request: Any) -> bool:
    global _asgi_request_type
    if _asgi_request_type is None:
        try:
            from django.core.handlers.asgi import ASGIRequest
        except ImportError:
            ASGIRequest = ()  # noqa: N806 - isinstance(x, ()) is always False
        _asgi_request_type = ASGIRequest
    return isinstance(request, _asgi_request_type)


class DjangoMiddleware:
    """The server span, metrics and hooks for every request Django handles."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from django.conf import settings
        from django.core.exceptions import MiddlewareNotUsed

        if _config is None or _CONTRIB_MIDDLEWARE in list(getattr(settings, "MIDDLEWARE", [])):
            raise MiddlewareNotUsed  # off, or contrib's middleware is installed: it traces
        self.get_response = get_response
        self.config = _config

    def __call__(self, request: Any) -> Any:
        self.process_request(request)
        response = self.get_response(request)
        return self.process_response(request, response)

    def process_request(self, request: Any) -> None:
        cfg = self.config
        try:
            if cfg.has_exclusions and cfg.excluded.url_disabled(request.build_absolute_uri("?")):
                return
            t = cfg.telemetry
            mode = t.mode
            is_asgi = _is_asgi(request)
            plain, origin = False, None
            if is_asgi:
                headers = asgi.header_map(request.scope.get("headers"))
                attrs = asgi.request_attributes(request.scope, headers, mode)
                carrier: Any = headers
                getter: Any = asgi.header_getter
                active = semconv.active_attrs(attrs, mode, asgi.ACTIVE_ORDER)
            else:
                # plain and origin as the Flask path passes them (fast_span's vouched
                # attributes; http.url prepared before the span starts)
                attrs, active, plain, origin = wsgi.request_start_plain(request.META, mode)
                carrier, getter = request.META, wsgi.environ_getter
            span, ctx = wsgi.start_server_span(
                t.tracer, _span_name(request), carrier, getter, attrs, plain=plain, origin=origin
            )
            # Its count (+1 and -1 without a lock): a WSGI key is the memoised head's object.
            cell = t.active.cell(active) if is_asgi else t.active.cell_of(active)
            if span.is_recording():
                extra: dict[str, Any] = {}
                for name in cfg.traced_attrs:
                    value = getattr(request, name, None)
                    if value is not None:
                        extra[name] = str(value)
                if semconv.is_server(span) and t.headers.request is not None:
                    items = headers.items() if is_asgi else wsgi.request_header_items(request.META)
                    extra.update(t.headers.attributes(t.headers.request, wsgi.REQ_PREFIX, items))
                if extra:
                    span.set_attributes(extra)
            request.__dict__[_STATE] = _Request(span, context.attach(ctx), attrs, cell)
            cell.append(None)  # active requests +1, once the -1 is sure to follow
        except Exception as exc:  # noqa: BLE001 - never the app's problem
            fault("django.request", exc)
            return
        if cfg.request_hook:
            try:
                cfg.request_hook(span, request)
            except Exception:
                _logger.exception("Exception raised by request_hook")

    def process_view(self, request: Any, view_func: Any, *args: Any, **kwargs: Any) -> None:
        req = request.__dict__.get(_STATE)
        if req is None:
            return
        match = getattr(request, "resolver_match", None)
        route = getattr(match, "route", None) if match else None
        if route:
            if req.span.is_recording():
                req.span.set_attribute("http.route", route)
            mode = self.config.telemetry.mode
            if mode.old:
                req.attrs["http.target"] = route
            if mode.new:
                req.attrs["http.route"] = route

    def process_exception(self, request: Any, exception: BaseException) -> None:
        req = request.__dict__.get(_STATE)
        if req is not None:
            req.exception = exception

    def process_response(self, request: Any, response: Any) -> Any:
        req = request.__dict__.pop(_STATE, None)
        if req is None:
            return response
        cfg = self.config
        t = cfg.telemetry
        span = req.span
        try:
            code, text = semconv.status_code_of(response.status_code)
            semconv.set_status(span, req.attrs, code, text, t.mode)
            if span.is_recording() and semconv.is_server(span) and t.headers.response:
                items = wsgi.response_header_items(response.items())
                custom = t.headers.attributes(t.headers.response, wsgi.RESP_PREFIX, items)
                if custom:
                    span.set_attributes(custom)
            propagator = get_global_response_propagator()
            if propagator:
                propagator.inject(response)
        except Exception as exc:  # noqa: BLE001
            fault("django.response", exc)
        if cfg.response_hook:
            try:
                cfg.response_hook(span, request, response)
            except Exception:
                _logger.exception("Exception raised by response_hook")
        try:
            req.cell.pop()  # active requests -1 (first: nothing below can skip it)
            target = req.attrs.get("http.target")
            t.record(
                default_timer() - req.start,
                req.attrs,
                None,
                {"http.target": target} if target else None,
            )
            if req.exception is not None:
                semconv.record_exception(span, req.exception)
            span.end()
            context.detach(req.token)  # type: ignore[arg-type,unused-ignore]
        except Exception as exc:  # noqa: BLE001
            fault("django.end", exc)
        return response


class DjangoInstrumentor(BaseInstrumentor):
    """Drop-in for contrib's DjangoInstrumentor (same dependencies and keyword arguments)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("django >= 2.0",)

    def _instrument(self, **kwargs: Any) -> None:
        global _config
        if os.environ.get("OTEL_PYTHON_DJANGO_INSTRUMENT") == "False":
            return
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        _config = _Config(kwargs)
        try:
            middleware = getattr(settings, "MIDDLEWARE", [])
        except (ImproperlyConfigured, ModuleNotFoundError):
            settings.configure()
            middleware = getattr(settings, "MIDDLEWARE", [])
        middleware = list(middleware or [])
        if _MIDDLEWARE in middleware or _CONTRIB_MIDDLEWARE in middleware:
            return
        position = _position(len(middleware), kwargs.get("middleware_position", 0))
        if kwargs.get("is_sql_commentor_enabled"):
            middleware.insert(position, _SQLCOMMENTER)
        middleware.insert(position, _MIDDLEWARE)
        settings.MIDDLEWARE = middleware

    def _uninstrument(self, **kwargs: Any) -> None:
        global _config
        _config = None
        from django.conf import settings

        middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
        if _MIDDLEWARE in middleware:
            middleware.remove(_MIDDLEWARE)
            settings.MIDDLEWARE = middleware


def _position(length: int, default: int) -> int:
    """``OTEL_PYTHON_DJANGO_MIDDLEWARE_POSITION`` as contrib reads it."""
    try:
        position = int(os.environ.get("OTEL_PYTHON_DJANGO_MIDDLEWARE_POSITION", ""))
    except ValueError:
        position = default
    return position if 0 <= position <= length else 0
