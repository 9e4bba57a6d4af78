"""WSGI servers (Flask, Django): tee the request and response bodies the app really exchanges.

``install()`` wraps ``Flask.__call__`` and ``WSGIHandler.__call__`` (the outermost WSGI callables)
so that ``wsgi.input`` is read through a tee (never ahead of the app) and the response iterable
is passed through a tee as the server iterates it (never buffered). The instrumentations' request
hooks hand us their span; its end is held until the response iterable is exhausted or closed, and
happens with the original end time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.util import request_uri

from ._engine import (
    REQ_HEADER,
    RESP_HEADER,
    Deferred,
    Engine,
    Exchange,
    guarded,
    record_error,
    recording,
    set_attributes,
    switch,
)
from .body import content_length, find_header, is_text, parse_content_type
from .redact import REDACTED

STATE_KEY = "hyperdx.capture"

_active: Engine | None = None
_patched: list[tuple[Any, str, Any]] = []

# What ``urllib.parse.quote`` leaves as is: with wsgiref's ``safe`` for PATH_INFO and SCRIPT_NAME.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~/;=,-]*")
_PLAIN_SCRIPT = re.compile(r"[A-Za-z0-9_.~/-]*")
_MISSING: Any = object()
_MAX_KEYS = 1024  # the caches below are keyed by what clients send: bounded
_MAX_PLANS = 256


def request_url(environ: dict[str, Any]) -> str:
    """``wsgiref.util.request_uri(environ, include_query=True)``, the same string, without
    ``quote()`` when the path has nothing to quote (nearly always)."""
    script = environ.get("SCRIPT_NAME") or ""
    path = environ.get("PATH_INFO", "")
    if not (
        isinstance(script, str)
        and isinstance(path, str)
        and _PLAIN_SCRIPT.fullmatch(script)
        and _PLAIN_PATH.fullmatch(path)
    ):
        return request_uri(environ, include_query=True)
    scheme = environ["wsgi.url_scheme"]
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ["SERVER_NAME"]
        port = environ["SERVER_PORT"]
        if port != ("443" if scheme == "https" else "80"):
            host = f"{host}:{port}"
    url = f"{scheme}://{host}{script or '/'}{path[1:] if not script else path}"
    query = environ.get("QUERY_STRING")
    return f"{url}?{query}" if query else url


def _may_be_excluded(engine: Engine, environ: dict[str, Any]) -> bool:
    """False when the request URL cannot start with an excluded endpoint (the SDK's own export
    URLs): its origin is none of theirs. Saves rebuilding the URL on every request."""
    origins = engine.excluded_origins
    host = environ.get("HTTP_HOST")
    script = environ.get("SCRIPT_NAME") or ""
    if (
        origins is None
        or not isinstance(host, str)
        or not host
        or "/" in host
        or not isinstance(script, str)
        or (script and script[0] != "/")
    ):
        return True  # the full comparison decides
    return f"{environ.get('wsgi.url_scheme')}://{host}" in origins


def _environ_key(engine: Engine, key: str) -> tuple[str, bool] | None:
    """(attribute key, is secret) of an environ key that carries a request header, else None."""
    if key.startswith("HTTP_"):
        name = key[5:].replace("_", "-").lower()
    elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        name = key.replace("_", "-").lower()
    else:
        return None
    return engine.header_key(REQ_HEADER, name)


def _header_plan(engine: Engine, names: tuple[str, ...]) -> list[tuple[str, str, bool]]:
    """(environ key, attribute key, is secret) of the header-carrying keys among ``names``."""
    keys = engine.environ_keys
    plan = []
    for key in names:
        entry = keys.get(key, _MISSING)
        if entry is _MISSING:
            entry = _environ_key(engine, key)
            if len(keys) >= _MAX_KEYS:
                keys.clear()
            keys[key] = entry
        if entry is not None:
            plan.append((key, entry[0], entry[1]))
    return plan


def environ_header_attributes(engine: Engine, environ: dict[str, Any]) -> dict[str, Any]:
    """The request headers of a WSGI environ as attributes (as ``header_attributes`` makes them
    from ``environ_headers``). Which keys carry headers is cached per environ key sequence (a
    server builds the same one for the same set of request headers), so the ~25 environ keys
    are not examined one by one on every request."""
    names = tuple(environ)
    plans = engine.environ_plans
    plan = plans.get(names)
    if plan is None:
        plan = _header_plan(engine, names)
        if len(plans) >= _MAX_PLANS:
            plans.clear()
        plans[names] = plan
    attrs: dict[str, Any] = {}
    for key, attr, secret in plan:
        value = environ[key]
        if not value and key[0] == "C":  # CONTENT_TYPE / CONTENT_LENGTH: only when set
            continue
        if secret:
            attrs[attr] = REDACTED
            continue
        value = value if isinstance(value, str) else str(value)
        attrs[attr] = f"{attrs[attr]}, {value}" if attr in attrs else value
    return attrs


def environ_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    items = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            items.append((key[5:].replace("_", "-").lower(), str(value)))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            items.append((key.replace("_", "-").lower(), str(value)))
    return items


class _Input:
    """Wraps ``wsgi.input``: every read is delegated as-is; what comes back is also teed."""

    def __init__(self, inner: Any, state: _State) -> None:
        self._inner = inner
        self._state = state

    def _feed(self, data: Any) -> Any:
        try:
            self._state.request.feed(data)
        except Exception as exc:
            record_error("wsgi.input", exc)
        return data

    def read(self, *args: Any) -> Any:
        return self._feed(self._inner.read(*args))

    def read1(self, *args: Any) -> Any:
        return self._feed(self._inner.read1(*args))

    def readline(self, *args: Any) -> Any:
        return self._feed(self._inner.readline(*args))

    def readlines(self, *args: Any) -> Any:
        lines = self._inner.readlines(*args)
        for line in lines:
            self._feed(line)
        return lines

    def readinto(self, buffer: Any) -> Any:
        n = self._inner.readinto(buffer)
        if n:
            self._feed(memoryview(buffer)[:n].tobytes())
        return n

    def __iter__(self) -> Iterator[Any]:
        for line in self._inner:
            yield self._feed(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _State(Exchange):
    """One WSGI request; the span arrives later, from the instrumentation's request hook."""

    __slots__ = ("_url", "environ", "response_headers", "span_attached", "status")

    def __init__(self, engine: Engine, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.status: str | None = None
        self.response_headers: list[tuple[str, str]] | None = None
        self.span_attached = False
        self._url: str | None = None
        super().__init__(engine, None, defer=False)
        self.request_type = environ.get("CONTENT_TYPE") or None
        length = environ.get("CONTENT_LENGTH")
        self.request_size = content_length(length) if length else None

    def url(self) -> str:
        """The request URL as wsgiref rebuilds it, computed at most once."""
        if self._url is None:
            self._url = request_url(self.environ)
        return self._url

    def attach(self, span: Any, pending: dict[str, Any]) -> None:
        """``pending``: the request's attributes, written with the bodies."""
        if self.span_attached:
            return
        self.span_attached = True
        self.span = span
        self.pending = pending
        self.deferred = Deferred(span, self.finish)

    def write_bodies(self) -> None:
        # The environ holds this state (and wsgi.input our tee): without the way back, the
        # request's objects are freed by reference counting, not left to the cyclic GC.
        environ, self.environ = self.environ, {}
        span = self.span
        if span is None:
            return
        engine = self.engine
        attrs = self.pending if self.pending is not None else {}
        self.pending = None
        try:
            # URL attributes now, not in the request hook: Flask re-sets them after its hook.
            url = self._url
            engine.url_updates(span, url or (lambda: request_url(environ)), out=attrs)
            if self.response_headers is not None:
                engine.header_attributes(RESP_HEADER, self.response_headers, attrs)
            self.body_attributes(attrs)
        finally:  # what could be formatted is written, even if a body could not
            if attrs:
                set_attributes(span, attrs)


class _Body:
    """The response iterable, teed as the server pulls it."""

    __slots__ = ("_result", "_state")

    def __init__(self, result: Iterable[bytes], state: _State) -> None:
        self._result = result
        self._state = state

    def __iter__(self) -> Iterator[bytes]:
        state = self._state
        for chunk in self._result:
            try:
                state.response.feed(chunk)
            except Exception as exc:
                record_error("wsgi.response", exc)
            yield chunk
        state.response_seen = True
        state.finish()

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._state.finish()


def _response_started(state: _State, headers: Any) -> None:
    """Remember the response headers as sent, and what they say about the body."""
    items = state.response_headers = list(headers)
    content_type = encoding = length = None
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        lname = name.lower() if isinstance(name, str) else str(name).lower()
        if lname == "content-type":
            if content_type is None:
                content_type = value
        elif lname == "content-encoding":
            if encoding is None:
                encoding = value
        elif lname == "content-length" and length is None:
            length = value
    state.response_type = None if content_type is None else str(content_type)
    if encoding is None:
        state.response_size = None if length is None else content_length(str(length))


def wrap_call(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def __call__(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        engine = _active
        if engine is None or STATE_KEY in environ:
            return original(self, environ, start_response)
        try:
            state = _State(engine, environ)
            environ[STATE_KEY] = state
            wsgi_input = environ.get("wsgi.input")
            if wsgi_input is not None:
                environ["wsgi.input"] = _Input(wsgi_input, state)
        except Exception as exc:
            record_error("wsgi.start", exc)
            return original(self, environ, start_response)

        def capturing_start_response(status: str, headers: Any, *args: Any) -> Any:
            # (a closure, not a method of the state: an app may call it after the exchange
            # is finished, and the state must not keep the server's callable)
            try:
                state.status = status
                _response_started(state, headers)
            except Exception as exc:
                record_error("wsgi.start_response", exc)
            return start_response(status, headers, *args)

        try:
            result = original(self, environ, capturing_start_response)
        except BaseException:
            state.finish()
            raise
        try:
            # Whether to tee the response: what the server gets.
            if state.span is None:
                state.finish()  # not traced (excluded URL, no instrumentation): nothing to do
                return result
            if state.response_headers is not None and state.response_size is not None:
                media, _ = parse_content_type(state.response_type)
                if not is_text(media) or engine.cap <= 0:
                    state.finish()  # size only and known: keep the original iterable (sendfile)
                    return result
            return _Body(result, state)
        except Exception as exc:
            record_error("wsgi.response", exc)
            state.finish()
            return result

    __call__._hyperdx_original = original  # type: ignore[attr-defined]
    return __call__


def request_from_environ(
    engine: Engine, span: Any, environ: dict[str, Any], url: str | None = None
) -> None:
    """Request side for a span: URL and headers; link the span to the body tee if present."""
    if switch.off or span is None:
        return
    try:
        if not span.is_recording():
            return
    except Exception as exc:  # a foreign span implementation
        record_error("is_recording", exc)
        return
    state = environ.get(STATE_KEY)
    if not (isinstance(state, _State) and state.engine is engine):
        state = None
    if engine.excluded and (url is not None or _may_be_excluded(engine, environ)):
        if url is None:
            url = state.url() if state is not None else request_url(environ)
        if engine.is_excluded(url):
            return
    attrs = environ_header_attributes(engine, environ)
    if state is not None:
        state.attach(span, attrs)  # URL and headers are written when the exchange finishes
        return
    whole = url if url is not None else (lambda: request_url(environ))
    engine.url_updates(span, whole, out=attrs)
    if attrs:
        set_attributes(span, attrs)


def flask_hooks(engine: Engine) -> dict[str, Any]:
    def request_hook(span: Any, environ: dict[str, Any]) -> None:
        try:
            request_from_environ(engine, span, environ)
        except Exception as exc:  # capture must never break the application
            record_error("flask.request_hook", exc)

    def response_hook(span: Any, status: str, response_headers: Any) -> None:
        try:
            var = _request_var if _request_var is not None else _flask_request_var()
            ctx = var.get(None) if var is not False else None
            if ctx is not None and isinstance(ctx.request.environ.get(STATE_KEY), _State):
                return  # the WSGI wrapper records the headers as sent, with the body
            _flask_response(engine, span, response_headers)
        except Exception as exc:
            record_error("flask.response_hook", exc)

    return {"request_hook": request_hook, "response_hook": response_hook}


def _flask_response(engine: Engine, span: Any, response_headers: Any) -> None:
    """Response headers from Flask's hook, when the app was not called through our wrapper."""
    environ = _flask_environ()
    if not recording(span) or isinstance(environ.get(STATE_KEY), _State):
        return
    attrs = engine.header_attributes(RESP_HEADER, list(response_headers))
    engine.url_updates(span, request_url(environ) if environ else None, out=attrs)
    if attrs:
        set_attributes(span, attrs)


def django_hooks(engine: Engine) -> dict[str, Any]:
    @guarded("django.request_hook")
    def request_hook(span: Any, request: Any) -> None:
        meta = request.META
        url = None if "wsgi.url_scheme" in meta else _django_url(request)  # ASGI: no WSGI keys
        request_from_environ(engine, span, meta, url)

    @guarded("django.response_hook")
    def response_hook(span: Any, request: Any, response: Any) -> None:
        if not recording(span) or isinstance(request.META.get(STATE_KEY), _State):
            return
        # Not under our WSGI wrapper (e.g. Django on ASGI): use what Django already holds.
        ex = Exchange(engine, span, defer=False)
        items = list(response.items()) + [
            ("Set-Cookie", c.output(header="")) for c in response.cookies.values()
        ]
        ex.pending = engine.header_attributes(RESP_HEADER, items)  # written with the bodies
        ex.request_type = request.META.get("CONTENT_TYPE")
        body = request.__dict__.get("_body")
        if isinstance(body, bytes):
            ex.request.feed(body)
            ex.request_seen = True
        else:
            ex.request_size = content_length(request.META.get("CONTENT_LENGTH"))
        ex.response_type = find_header(items, "content-type")
        if not getattr(response, "streaming", True):
            ex.response.feed(response.content)
            ex.response_seen = True
        ex.finish()

    return {"request_hook": request_hook, "response_hook": response_hook}


_request_var: Any = None  # Flask's request-context ContextVar (False: Flask < 2.3)


def _flask_request_var() -> Any:
    global _request_var
    if _request_var is None:
        from flask import globals as flask_globals

        _request_var = getattr(flask_globals, "_cv_request", None) or False
    return _request_var


def _flask_environ() -> dict[str, Any]:
    """The current Flask request's environ ({} outside a request), without LocalProxy lookups."""
    var = _flask_request_var()
    if var is not False:
        ctx = var.get(None)
        return {} if ctx is None else ctx.request.environ
    import flask

    return flask.request.environ if flask.has_request_context() else {}


def _django_url(request: Any) -> str:
    from django.core.exceptions import DisallowedHost

    try:
        return str(request.build_absolute_uri())
    except DisallowedHost:  # Django answers 400 itself; still name the URL on the span
        meta = request.META
        host = f"{meta.get('SERVER_NAME', '')}:{meta.get('SERVER_PORT', '')}"
        return f"{request.scheme}://{host}{request.get_full_path()}"


def _targets() -> list[tuple[Any, str]]:
    found = []
    try:
        import flask.app

        found.append((flask.app.Flask, "__call__"))
    except ImportError:
        pass
    try:
        import django.core.handlers.wsgi

        found.append((django.core.handlers.wsgi.WSGIHandler, "__call__"))
    except ImportError:
        pass
    return found


def install(engine: Engine) -> None:
    global _active
    _active = engine
    if _patched:
        return
    for owner, name in _targets():
        original = owner.__dict__[name]
        if getattr(original, "_hyperdx_original", None) is not None:
            continue
        setattr(owner, name, wrap_call(original))
        _patched.append((owner, name, original))


def uninstall() -> None:
    global _active
    _active = None
    while _patched:
        owner, name, original = _patched.pop()
        setattr(owner, name, original)
