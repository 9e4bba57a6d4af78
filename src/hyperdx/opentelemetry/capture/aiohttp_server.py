"""aiohttp.web server spans: the instrumentation has no hooks, so ``install()`` adds a middleware
right after the OpenTelemetry one (inside its span).

Bodies: the request body when the handler read it whole (``read()``/``text()``/``json()``/
``post()`` keep it), the response body of a ``web.Response`` with in-memory content; bodies
streamed with ``StreamResponse.write()`` are teed as they are written.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any

from opentelemetry import trace

from ._engine import REQ_HEADER, RESP_HEADER, Engine, Exchange, record_error, recording
from .body import content_length, find_header

_active: Engine | None = None
_patched: list[tuple[Any, str, Any]] = []
_current: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar(
    "hyperdx_aiohttp_server", default=None
)


def _start(engine: Engine, request: Any) -> Exchange | None:
    span = trace.get_current_span()
    if not recording(span) or getattr(span, "kind", None) != trace.SpanKind.SERVER:
        return None
    url = str(request.url)
    if engine.is_excluded(url):
        return None
    items = list(request.headers.items())
    engine.set_url(span, url)
    engine.headers(span, REQ_HEADER, items)
    ex = Exchange(engine, span, defer=False)
    ex.request_type = find_header(items, "content-type")
    ex.request_size = content_length(find_header(items, "content-length"))
    return ex


def _finish(ex: Exchange, request: Any, response: Any) -> None:
    body = getattr(request, "_read_bytes", None)
    if isinstance(body, bytes) and not ex.request.size:
        ex.request.feed(body)
        ex.request_seen = True
    if response is not None:
        items = list(response.headers.items())
        if find_header(items, "set-cookie") is None:  # not prepared yet: cookies come later
            cookies = getattr(response, "cookies", None) or {}
            items += [("Set-Cookie", c.output(header="").strip()) for c in cookies.values()]
        ex.engine.headers(ex.span, RESP_HEADER, items)
        ex.response_type = find_header(items, "content-type") or getattr(
            response, "content_type", None
        )
        if (
            getattr(response, "charset", None)
            and ex.response_type
            and "charset" not in (ex.response_type)
        ):
            ex.response_type += f"; charset={response.charset}"
        content = getattr(response, "body", None) if not ex.response.size else None
        if isinstance(content, (bytes, bytearray)):
            ex.response.feed(bytes(content))
            ex.response_seen = True
        elif ex.response.size:
            ex.response_seen = True
        else:
            ex.response_size = content_length(find_header(items, "content-length"))
    ex.finish()


def _middleware() -> Any:
    from aiohttp import web

    @web.middleware
    async def hyperdx_capture(request: Any, handler: Any) -> Any:
        engine = _active
        ex = None
        if engine is not None:
            try:
                ex = _start(engine, request)
            except Exception as exc:
                record_error("aiohttp_server.request", exc)
        if ex is None:
            return await handler(request)
        token = _current.set(ex)
        response = None
        try:
            response = await handler(request)
            return response
        finally:
            _current.reset(token)
            try:
                _finish(ex, request, response)
            except Exception as exc:
                record_error("aiohttp_server.response", exc)

    return hyperdx_capture


def _wrap_init(original: Any) -> Any:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        middlewares = list(kwargs.get("middlewares") or ())
        if _active is not None:
            for i, mw in enumerate(middlewares):
                if getattr(mw, "__module__", "").startswith(
                    "opentelemetry.instrumentation.aiohttp_server"
                ):
                    middlewares.insert(i + 1, _middleware())
                    kwargs["middlewares"] = middlewares
                    break
        original(self, *args, **kwargs)

    __init__._hyperdx_original = original  # type: ignore[attr-defined]
    return __init__


def _wrap_write(original: Any) -> Any:
    @functools.wraps(original)
    async def write(self: Any, data: Any) -> Any:
        ex = _current.get()
        if ex is not None:
            try:
                ex.response.feed(data)
            except Exception as exc:
                record_error("aiohttp_server.write", exc)
        return await original(self, data)

    write._hyperdx_original = original  # type: ignore[attr-defined]
    return write


def install(engine: Engine) -> None:
    global _active
    _active = engine
    if _patched:
        return
    try:
        from aiohttp import web_app, web_response
    except ImportError:
        return
    for owner, name, wrapper in (
        (web_app.Application, "__init__", _wrap_init),
        (web_response.StreamResponse, "write", _wrap_write),
    ):
        original = owner.__dict__[name]
        setattr(owner, name, wrapper(original))
        _patched.append((owner, name, original))


def uninstall() -> None:
    global _active
    _active = None
    while _patched:
        owner, name, original = _patched.pop()
        setattr(owner, name, original)
