"""WSGI servers (Flask, Django): tee the request and response bodies the app really exchanges.

``install()`` wraps ``Flask.__call__`` and ``WSGIHandler.__call__`` (the outermost WSGI callables)
so that ``wsgi.input`` is read through a tee (never ahead of the app) and the response iterable
is passed through a tee as the server iterates it (never buffered). The instrumentations' request
hooks hand us their span; its end is held until the response iterable is exhausted or closed, and
happens with the original end time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.util import request_uri

from ._engine import (
    REQ_HEADER,
    RESP_HEADER,
    Engine,
    Exchange,
    guarded,
    record_error,
    recording,
)
from .body import content_length, find_header, is_text, parse_content_type

STATE_KEY = "hyperdx.capture"

_active: Engine | None = None
_patched: list[tuple[Any, str, Any]] = []


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

    def __init__(self, engine: Engine, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.status: str | None = None
        self.response_headers: list[tuple[str, str]] | None = None
        self.span_attached = False
        super().__init__(engine, None, defer=False)
        self.request_type = environ.get("CONTENT_TYPE") or None
        self.request_size = content_length(environ.get("CONTENT_LENGTH"))

    def attach(self, span: Any) -> None:
        if self.span_attached:
            return
        self.span_attached = True
        self.span = span
        self.defer()

    def write_bodies(self) -> None:
        if self.span is None:
            return
        # URL attributes now, not in the request hook: Flask re-sets them after its hook runs.
        self.engine.set_url(self.span, request_uri(self.environ, include_query=True))
        if self.response_headers is not None:
            self.engine.headers(self.span, RESP_HEADER, self.response_headers)
        super().write_bodies()


class _Body:
    """The response iterable, teed as the server pulls it."""

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


def _start_state(engine: Engine, environ: dict[str, Any]) -> _State:
    state = _State(engine, environ)
    environ[STATE_KEY] = state
    wsgi_input = environ.get("wsgi.input")
    if wsgi_input is not None:
        environ["wsgi.input"] = _Input(wsgi_input, state)
    return state


def _after_app(state: _State, result: Any) -> Any:
    """Decide whether to tee the response; returns what the server gets."""
    if state.span is None:
        state.finish()  # not traced (excluded URL, no instrumentation): nothing to do
        return result
    if state.response_headers is not None:
        media, _ = parse_content_type(state.response_type)
        if (not is_text(media) or state.engine.cap <= 0) and state.response_size is not None:
            state.finish()  # size only and known: keep the original iterable (sendfile)
            return result
    return _Body(result, state)


def wrap_call(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def __call__(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        engine = _active
        if engine is None or STATE_KEY in environ:
            return original(self, environ, start_response)
        try:
            state = _start_state(engine, environ)
        except Exception as exc:
            record_error("wsgi.start", exc)
            return original(self, environ, start_response)

        def capturing_start_response(status: str, headers: Any, *args: Any) -> Any:
            try:
                state.status = status
                state.response_headers = list(headers)
                state.response_type = find_header(state.response_headers, "content-type")
                if find_header(state.response_headers, "content-encoding") is None:
                    state.response_size = content_length(
                        find_header(state.response_headers, "content-length")
                    )
            except Exception as exc:
                record_error("wsgi.start_response", exc)
            return start_response(status, headers, *args)

        try:
            result = original(self, environ, capturing_start_response)
        except BaseException:
            state.finish()
            raise
        try:
            return _after_app(state, result)
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
    if not recording(span):
        return
    if url is None:
        url = request_uri(environ, include_query=True)
    if engine.is_excluded(url):
        return
    engine.headers(span, REQ_HEADER, environ_headers(environ))
    state = environ.get(STATE_KEY)
    if isinstance(state, _State) and state.engine is engine:
        state.attach(span)  # URL attributes are written when the exchange finishes
    else:
        engine.set_url(span, url)


def flask_hooks(engine: Engine) -> dict[str, Any]:
    @guarded("flask.request_hook")
    def request_hook(span: Any, environ: dict[str, Any]) -> None:
        request_from_environ(engine, span, environ)

    @guarded("flask.response_hook")
    def response_hook(span: Any, status: str, response_headers: Any) -> None:
        import flask

        environ = flask.request.environ if flask.has_request_context() else {}
        if not recording(span) or isinstance(environ.get(STATE_KEY), _State):
            return  # the WSGI wrapper records the headers as sent, with the body
        engine.set_url(span, request_uri(environ, include_query=True) if environ else None)
        engine.headers(span, RESP_HEADER, list(response_headers))

    return {"request_hook": request_hook, "response_hook": response_hook}


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
        engine.headers(span, RESP_HEADER, items)
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
