"""Flask: one class-level wrapper around ``Flask.wsgi_app`` plus two tiny hooks.

Contrib replaces the ``Flask`` class (so apps created earlier are missed) and per request builds
the request attributes twice, re-reads header-capture settings and computes ``request.url``
three times. Here the three methods every request goes through are wrapped once on the class,
so every app (also one created before instrumentation) is covered, and per-app state is built at
its first request:

* ``wsgi_app``: request attributes, active-requests counter, start_response, duration;
* ``preprocess_request`` (routing is done): the span starts, named after the URL rule;
* ``do_teardown_request``: the exception (if any) is recorded and the span ends, where
  contrib's teardown hook ends it.

An app that contrib instruments itself (``FlaskInstrumentor().instrument_app(app)``) is left to
contrib, and one we instrumented is marked so contrib's ``instrument_app`` skips it: one span.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection
from importlib import metadata
from time import time_ns
from timeit import default_timer
from typing import Any

from opentelemetry import context, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined,unused-ignore]
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.util.http import ExcludeList, get_excluded_urls, parse_excluded_urls

from hyperdx.opentelemetry import fast_context
from hyperdx.opentelemetry.server import semconv
from hyperdx.opentelemetry.server.faults import fault
from hyperdx.opentelemetry.server.telemetry import ServerTelemetry
from hyperdx.opentelemetry.server.wsgi import (
    REQ_PREFIX,
    RESP_PREFIX,
    default_span_name,
    environ_getter,
    request_header_items,
    request_start_plain,
    start_server_span,
)

_STATE = "_hyperdx_server"  # per-app state in app.__dict__ (False: contrib owns this app)
_KEY = "hyperdx.server.request"  # per-request state in the environ
_COMMENTER_KEY = "SQLCOMMENTER_ORM_TAGS_AND_VALUES"
_INSTRUMENTS = ("flask >= 1.0",)


class _Config:
    """instrument()/instrument_app() keyword arguments, as contrib's FlaskInstrumentor takes."""

    def __init__(
        self,
        request_hook: Callable[..., None] | None = None,
        response_hook: Callable[..., None] | None = None,
        tracer_provider: Any = None,
        excluded_urls: str | None = None,
        enable_commenter: bool = True,
        commenter_options: dict[str, Any] | None = None,
        meter_provider: Any = None,
        **_: Any,
    ) -> None:
        self.request_hook = request_hook if callable(request_hook) else None
        self.response_hook = response_hook if callable(response_hook) else None
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.excluded: ExcludeList = (
            get_excluded_urls("FLASK")
            if excluded_urls is None
            else parse_excluded_urls(excluded_urls)
        )
        self.enable_commenter = enable_commenter
        self.commenter_options = commenter_options or {}


class _Request:
    """One request's state; its :meth:`start_response` is the one the app is given (a bound
    method of this object instead of a closure with a cell per variable it reads)."""

    __slots__ = (
        "attrs",
        "ctx",
        "excluded",
        "info",
        "origin",
        "plain",
        "route",
        "rule",
        "span",
        "start_ns",
        "state",
        "status",
        "token",
        "wrapped",
    )

    attrs: dict[str, Any]
    plain: bool  # every value in attrs is of a plain type (fast_span)
    origin: str | None  # the head's hygiene.server_origin (start_server_span)
    excluded: bool
    start_ns: int
    state: _AppState
    wrapped: Callable[..., Any]  # the server's start_response
    span: trace.Span | None
    token: object
    ctx: context.Context | None  # the attached context (holds the span)
    rule: Any  # request.url_rule when the span started
    info: _Route | None  # self.rule's memo
    route: Any  # the rule at the first start_response (for the metrics)
    status: str | None  # the status code text set_status last set

    def start_response(self, status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
        state = self.state
        if not self.excluded:
            span = self.span
            try:
                if span is not None:  # routing was done when the span started
                    rule = self.rule
                else:
                    request = _current_request()
                    rule = request.url_rule if request is not None else None
                if rule is not None and self.route is None:
                    self.route = rule
                propagator = get_global_response_propagator()
                if propagator:
                    propagator.inject(headers, setter=_header_list_setter)
                if span is not None:
                    found = semconv.STATUS_LINES.get(status)
                    code, text = found if found else semconv.wsgi_status(status)
                    semconv.set_status(span, self.attrs, code, text, state.mode)
                    self.status = text
                    if state.telemetry.headers.response is not None:
                        _capture_response_headers(state.telemetry, span, headers)
            except Exception as exc:  # noqa: BLE001
                fault("flask.start_response", exc)
            response_hook = state.config.response_hook
            if response_hook is not None:
                response_hook(span, status, headers)
        if args:  # exc_info
            return self.wrapped(status, headers, *args)
        return self.wrapped(status, headers)  # a plain call: no argument tuple built


def _new_request(
    attrs: dict[str, Any],
    excluded: bool,
    start_ns: int,
    state: _AppState,
    wrapped: Callable[..., Any],
    plain: bool,
    origin: str | None,
) -> _Request:
    """A request's state, made with ``object.__new__`` and plain slot stores (calling the class,
    ``type.__call__`` then ``__init__``, costs ~0.4k more of the ~3.5k instructions)."""
    req = _new_object(_Request)
    req.attrs = attrs
    req.plain = plain
    req.origin = origin
    req.excluded = excluded
    req.start_ns = start_ns
    req.state = state
    req.wrapped = wrapped
    req.span = req.ctx = req.rule = req.info = req.route = req.status = None
    req.token = None
    return req


_new_object = object.__new__


class _Route:
    """What a URL rule contributes to every request it serves, computed at its first one."""

    __slots__ = ("commenter", "names", "new_extra", "old_extra", "plain", "rule", "text")

    def __init__(self, rule: Any) -> None:
        self.rule = rule  # held, so the id() keying the cache stays this rule's
        self.text: str = rule.rule
        self.plain = type(self.text) is str  # http.route keeps the attributes plain
        route = str(rule)
        self.old_extra = {"http.target": route} if route else None
        self.new_extra = {"http.route": route} if route else None
        self.names: dict[str, str] = {}  # REQUEST_METHOD -> span name
        self.commenter: dict[str, Any] | None = None  # the sqlcommenter tags, once known

    def name(self, raw_method: str) -> str:
        """``METHOD rule`` (``HTTP rule`` for an unknown method), as contrib names the span."""
        name = self.names.get(raw_method)
        if name is None:
            method = semconv.sanitize_method(raw_method.strip())
            name = f"{'HTTP' if method == '_OTHER' else method} {self.text}"
            if len(self.names) < _MAX_NAMES:
                self.names[raw_method] = name
        return name


_MAX_ROUTES = 1024  # rules an app has are few; the bound only guards odd apps
_MAX_DURATIONS = 1024  # heads x statuses x routes; past it, record_wsgi's memo by value
_Durations = tuple[Any, dict[str, Any], dict[str, Any]]
_MAX_NAMES = 16  # methods per rule (custom methods, with capture-all-methods on)


class _AppState:
    """What one Flask app needs per request, built once."""

    def __init__(self, config: _Config) -> None:
        self.config = config
        mode = semconv.current_mode()
        self.telemetry = ServerTelemetry(
            "opentelemetry.instrumentation.flask",
            "flask",
            config.tracer_provider,
            config.meter_provider,
            active_unit="{request}" if mode.new else "requests",
            active_description=(
                semconv.ACTIVE_DESCRIPTION if mode.new else semconv.ACTIVE_DESCRIPTION_FLASK_OLD
            ),
        )
        self.mode = self.telemetry.mode
        self.has_exclusions = bool(getattr(config.excluded, "_excluded_urls", True))
        self.framework = f"flask:{_flask_version()}"
        self.routes: dict[int, _Route] = {}  # id(url rule) -> its precomputed part
        # (id(active key), status code text, route) -> (active key, old attrs, new attrs)
        self.durations: dict[tuple[int, str | None, _Route | None], _Durations] = {}

    def route(self, rule: Any) -> _Route:
        found = self.routes.get(id(rule))
        if found is None or found.rule is not rule:
            found = _Route(rule)
            if len(self.routes) < _MAX_ROUTES:
                self.routes[id(rule)] = found
        return found

    def call(
        self, original: Callable[..., Any], app: Any, environ: dict[str, Any], start_response: Any
    ) -> Any:
        t = self.telemetry
        mode = self.mode
        try:
            start_ns = time_ns()
            start = default_timer()
            attrs, active, plain, origin = request_start_plain(environ, mode)
            excluded = self.has_exclusions and self.config.excluded.url_disabled(_url(environ))
            req = _new_request(attrs, excluded, start_ns, self, start_response, plain, origin)
            environ[_KEY] = req
            cell = t.active.cell_of(active)
            cell.append(None)  # active requests +1 (ActiveRequests: atomic, no lock)
        except Exception as exc:  # noqa: BLE001 - never the app's problem
            fault("flask.request", exc)
            return original(app, environ, start_response)
        try:
            result = original(app, environ, req.start_response)
            if not req.excluded:
                try:
                    rule = req.route
                    if rule is None:
                        info = None
                    else:
                        info = req.info if rule is req.rule else None
                        if info is None:
                            info = self.route(rule)
                    ctx = req.ctx
                    if ctx is None:
                        ctx = t.exemplar_context(trace.INVALID_SPAN)
                    seconds = default_timer() - start
                    if info is req.info:  # so attrs' http.route (if any) is info's
                        self._record(seconds, req, active, info, ctx)
                    else:
                        t.record_wsgi(seconds, attrs, info, ctx, False)
                except Exception as exc:  # noqa: BLE001
                    fault("flask.metrics", exc)
            return result
        finally:
            cell.pop()  # active requests -1

    def _record(
        self, seconds: float, req: _Request, active: Any, info: _Route | None, ctx: Any
    ) -> None:
        """The duration histograms. Their attributes are the head's (one per ``active`` key
        object, the memoised head's), the status code text's and the route's, nothing else
        (``semconv.DURATION_*`` of what ``request_start_plain``, ``start_span`` and
        ``set_status`` set), so the picked sets are memoised per those three, by identity:
        no attribute is read per request."""
        t = self.telemetry
        key = (id(active), req.status, info)
        found = self.durations.get(key)
        if found is not None and found[0] is active:
            t.record_known(seconds, found[1], found[2], ctx)
            return
        str_int = req.plain and (info is None or info.plain)
        picked = t.record_wsgi(seconds, req.attrs, info, ctx, str_int)
        if picked is not None and len(self.durations) < _MAX_DURATIONS:
            self.durations[key] = (active, *picked)  # holds active: its id stays its own

    def start_span(self, request: Any, req: _Request) -> None:
        """At preprocess_request: routing is done, so the span carries the rule."""
        environ = request.environ
        t = self.telemetry
        rule = request.url_rule
        attrs = req.attrs  # the span copies them; http.route is also what the metrics add
        if rule is not None:
            info = self.routes.get(id(rule))
            if info is None or info.rule is not rule:
                info = self.route(rule)
            attrs["http.route"] = info.text
            method = environ.get("REQUEST_METHOD", "") or ""
            name = info.names.get(method) or info.name(method)
        else:
            info = None
            name = default_span_name(environ)
        extra = None
        if self.config.enable_commenter:
            if (
                info is not None
                and info.commenter is not None
                # so it is the rule's endpoint (_stock_endpoint, inlined)
                and (type(request) is _STOCK_REQUEST or type(request).endpoint is _STOCK_ENDPOINT)
            ):
                extra = (_COMMENTER_KEY, dict(info.commenter))
            else:
                extra = (_COMMENTER_KEY, self._commenter(request, info))
        span, ctx = start_server_span(
            t.tracer,
            name,
            environ,
            environ_getter,
            attrs,
            req.start_ns,
            extra,
            plain=req.plain and (info is None or info.plain),
            origin=req.origin,
        )
        if t.headers.request is not None and span.is_recording() and semconv.is_server(span):
            custom = t.headers.attributes(
                t.headers.request, REQ_PREFIX, request_header_items(environ)
            )
            if custom:
                span.set_attributes(custom)
        req.span = span
        req.rule = rule
        req.info = info
        req.ctx = ctx
        req.token = fast_context.attach(ctx)

    def _commenter(self, request: Any, route: _Route | None) -> dict[str, Any]:
        """The sqlcommenter tags; remembered in ``route`` for the next requests of its rule
        (which copy it) when the request's ``endpoint`` is Flask's (the rule's endpoint)."""
        endpoint = request.endpoint
        options = self.config.commenter_options
        info: dict[str, Any] = {}
        if options.get("framework", True):
            info["framework"] = self.framework
        if options.get("controller", True) and endpoint:
            info["controller"] = endpoint
        if options.get("route", True) and route is not None and route.text:
            info["route"] = route.text
        if route is not None and _stock_endpoint(request):
            route.commenter = dict(info)
        return info


def _capture_response_headers(t: ServerTelemetry, span: Any, headers: Any) -> None:
    if span.is_recording() and semconv.is_server(span):
        from hyperdx.opentelemetry.server.wsgi import response_header_items

        custom = t.headers.attributes(
            t.headers.response, RESP_PREFIX, response_header_items(headers)
        )
        if custom:
            span.set_attributes(custom)


def _url(environ: dict[str, Any]) -> str:
    """``request.url`` as Flask computes it (only needed when exclusions are configured)."""
    from werkzeug.wsgi import get_current_url

    return str(get_current_url(environ))


class _HeaderListSetter:
    def set(self, carrier: list[tuple[str, str]], key: str, value: str) -> None:
        carrier.append((key, value))


_header_list_setter = _HeaderListSetter()


def _flask_version() -> str:
    try:
        return metadata.version("flask")
    except metadata.PackageNotFoundError:
        return ""


_STOCK_ENDPOINT: Any = None  # flask.wrappers.Request.endpoint (set when instrumenting)
_STOCK_REQUEST: Any = None  # flask.wrappers.Request (set when instrumenting)


def _stock_endpoint(request: Any) -> bool:
    """Whether ``request.endpoint`` is Flask's own property (the rule's endpoint)."""
    cls = type(request)
    return cls is _STOCK_REQUEST or cls.endpoint is _STOCK_ENDPOINT


_request_var: Any = None  # Flask's request ContextVar, looked up once (None: not yet / absent)


def _current_request() -> Any:
    """The active request object (None outside a request), without the LocalProxy detour."""
    global _request_var
    var = _request_var
    if var is None:
        from flask import globals as flask_globals

        var = _request_var = getattr(flask_globals, "_cv_request", None) or False
    if var is not False:  # Flask >= 2.3
        ctx = var.get(None)
        return None if ctx is None else ctx.request
    import flask

    return flask.request._get_current_object() if flask.has_request_context() else None  # type: ignore[attr-defined]


def _resolve_stock_endpoint() -> None:
    global _STOCK_ENDPOINT, _STOCK_REQUEST
    import flask.wrappers

    _STOCK_ENDPOINT = flask.wrappers.Request.__dict__.get("endpoint")
    _STOCK_REQUEST = flask.wrappers.Request if _STOCK_ENDPOINT is not None else None


# --- the class-level wrappers -----------------------------------------------------------------

_config: _Config | None = None
_originals: dict[str, Any] = {}


def _state_of(app: Any) -> _AppState | None:
    state = app.__dict__.get(_STATE)
    if state is None:
        if _config is None:  # only explicitly instrumented apps (or uninstrumented)
            return None
        if getattr(app, "_is_instrumented_by_opentelemetry", False):
            app.__dict__[_STATE] = False  # contrib instrumented this app itself: it owns it
            return None
        state = _AppState(_config)
        app.__dict__[_STATE] = state
        app._is_instrumented_by_opentelemetry = True  # contrib's instrument_app() skips it
    return state or None


def _wsgi_app(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
    state = self._hyperdx_server  # app.__dict__[_STATE], or the class's None
    if state is None:  # the app's first request (or an app left uninstrumented)
        try:
            state = _state_of(self)
        except Exception as exc:  # noqa: BLE001
            fault("flask.setup", exc)
    if not state:
        return _originals["wsgi_app"](self, environ, start_response)
    return state.call(_originals["wsgi_app"], self, environ, start_response)


def _preprocess_request(self: Any) -> Any:
    state = self._hyperdx_server
    if state:
        request = None
        try:
            var = _request_var  # _current_request(), inlined (resolved when instrumenting)
            if var:
                ctx = var.get(None)
                request = None if ctx is None else ctx.request
            else:
                request = _current_request()
            req = request.environ.get(_KEY) if request is not None else None
            if req is not None and req.span is None and not req.excluded:
                state.start_span(request, req)
            else:
                request = None
        except Exception as exc:  # noqa: BLE001
            fault("flask.start_span", exc)
            request = None
        hook = state.config.request_hook
        if hook is not None and request is not None:
            hook(request.environ[_KEY].span, request.environ)
    return _originals["preprocess_request"](self)


_NO_EXC: Any = object()  # do_teardown_request called without its argument


def _do_teardown_request(self: Any, exc: Any = _NO_EXC) -> Any:
    try:
        if exc is _NO_EXC:
            return _originals["do_teardown_request"](self)
        return _originals["do_teardown_request"](self, exc)
    finally:
        if self._hyperdx_server:
            try:  # the span ends here, where contrib's teardown hook ends it
                var = _request_var  # _current_request(), inlined
                if var:
                    ctx = var.get(None)
                    request = None if ctx is None else ctx.request
                else:
                    request = _current_request()
                req = request.environ.get(_KEY) if request is not None else None
                if req is not None and req.span is not None and req.token is not None:
                    if exc is not None and exc is not _NO_EXC:
                        # Flask < 2.3 passes a sentinel: the exception being handled
                        if not isinstance(exc, BaseException):
                            exc = sys.exc_info()[1]
                        if exc is not None:
                            semconv.record_exception(req.span, exc)
                    token, req.token = req.token, None
                    req.span.end()
                    fast_context.detach(token)  # type: ignore[arg-type,unused-ignore]
            except Exception as error:  # noqa: BLE001
                fault("flask.end_span", error)


_WRAPPERS = {
    "wsgi_app": _wsgi_app,
    "preprocess_request": _preprocess_request,
    "do_teardown_request": _do_teardown_request,
}


class FlaskInstrumentor(BaseInstrumentor):
    """Drop-in for contrib's FlaskInstrumentor (same dependencies and keyword arguments)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        import flask.app

        global _config
        _config = _Config(**kwargs)
        _current_request()  # resolves _request_var while instrumenting, not per request
        _resolve_stock_endpoint()
        cls = flask.app.Flask
        if _STATE not in cls.__dict__:  # the default the wrappers read (an attribute load
            setattr(cls, _STATE, None)  # is cheaper than app.__dict__.get)
        for name, wrapper in _WRAPPERS.items():
            if name not in _originals:
                _originals[name] = cls.__dict__[name]
                setattr(cls, name, wrapper)

    def _uninstrument(self, **kwargs: Any) -> None:
        import flask.app

        global _config
        _config = None
        for name, original in list(_originals.items()):
            setattr(flask.app.Flask, name, original)
            del _originals[name]
        if _STATE in flask.app.Flask.__dict__:
            delattr(flask.app.Flask, _STATE)

    @staticmethod
    def instrument_app(app: Any, **kwargs: Any) -> None:
        """Instrument one app with its own options (instruments the class if needed)."""
        if app.__dict__.get(_STATE) or getattr(app, "_is_instrumented_by_opentelemetry", False):
            return
        if not _originals:
            FlaskInstrumentor()._instrument()
            global _config
            _config = None  # only explicitly given apps
        app.__dict__[_STATE] = _AppState(_Config(**kwargs))
        app._is_instrumented_by_opentelemetry = True

    @staticmethod
    def uninstrument_app(app: Any) -> None:
        app.__dict__[_STATE] = False
        app._is_instrumented_by_opentelemetry = False
