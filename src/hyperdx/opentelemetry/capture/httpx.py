"""httpx client spans (sync and async): hooks for HTTPXClientInstrumentor.

httpx reads the response body after the transport returns, i.e. after the instrumentation ended
the span. We wrap the transport's byte stream so what the application reads passes through a tee,
and hold the span's end (keeping its original end time) until that stream is exhausted or closed.
Request bodies are taken only from in-memory content (``content=``, ``json=``, ``data=``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from ._engine import REQ_HEADER, RESP_HEADER, Engine, Exchange, guarded, record_error, recording
from .body import content_length, find_header

_KEY = "_hyperdx_capture"


class _SyncTee:
    def __init__(self, inner: Any, ex: Exchange) -> None:
        self._inner = inner
        self._ex = ex

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            try:
                self._ex.response.feed(chunk)
            except Exception as exc:
                record_error("httpx.stream", exc)
            yield chunk
        self._ex.response_seen = True
        self._ex.finish()

    def close(self) -> None:
        try:
            if hasattr(self._inner, "close"):
                self._inner.close()
        finally:
            self._ex.finish()


class _AsyncTee:
    def __init__(self, inner: Any, ex: Exchange) -> None:
        self._inner = inner
        self._ex = ex

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            try:
                self._ex.response.feed(chunk)
            except Exception as exc:
                record_error("httpx.stream", exc)
            yield chunk
        self._ex.response_seen = True
        self._ex.finish()

    async def aclose(self) -> None:
        try:
            if hasattr(self._inner, "aclose"):
                await self._inner.aclose()
        finally:
            self._ex.finish()


def _header_items(headers: Any) -> list[tuple[Any, Any]]:
    if hasattr(headers, "multi_items"):
        return list(headers.multi_items())
    return list(headers or ())


def _request(engine: Engine, span: Any, request: Any) -> None:
    url = str(request.url) if request.url is not None else None
    if not recording(span) or engine.is_excluded(url):
        return
    items = _header_items(request.headers)
    engine.set_url(span, url)
    engine.headers(span, REQ_HEADER, items)
    stream = request.stream
    inner = getattr(stream, "_stream", None)
    ex = Exchange(engine, span, defer=False)
    ex.request_type = find_header(items, "content-type")
    if type(stream).__name__ == "ByteStream" and isinstance(inner, bytes):
        ex.request.feed(inner)  # httpx keeps in-memory content as one bytes object
        ex.request_seen = True
    else:
        ex.request_size = content_length(find_header(items, "content-length"))
    span.__dict__[_KEY] = ex


def _response(engine: Engine, span: Any, response: Any, is_async: bool) -> None:
    ex: Exchange | None = span.__dict__.pop(_KEY, None)
    if ex is None:
        return
    try:
        if not recording(span):
            return
        items = _header_items(response.headers)
        engine.headers(span, RESP_HEADER, items)
        ex.response_type = find_header(items, "content-type")
        if find_header(items, "content-encoding") is None:
            ex.response_size = content_length(find_header(items, "content-length"))
        stream = response.stream
        if hasattr(stream, "_httpcore_stream"):
            inner = stream._httpcore_stream
            ex.defer()
            stream._httpcore_stream = _AsyncTee(inner, ex) if is_async else _SyncTee(inner, ex)
            ex = None  # the tee finishes it
    finally:
        if ex is not None:
            ex.finish()


def hooks(engine: Engine) -> dict[str, Any]:
    @guarded("httpx.request_hook")
    def request_hook(span: Any, request: Any) -> None:
        _request(engine, span, request)

    @guarded("httpx.response_hook")
    def response_hook(span: Any, request: Any, response: Any) -> None:
        _response(engine, span, response, False)

    async def async_request_hook(span: Any, request: Any) -> None:
        _guarded_request(span, request)

    async def async_response_hook(span: Any, request: Any, response: Any) -> None:
        _guarded_async_response(span, response)

    @guarded("httpx.async_request_hook")
    def _guarded_request(span: Any, request: Any) -> None:
        _request(engine, span, request)

    @guarded("httpx.async_response_hook")
    def _guarded_async_response(span: Any, response: Any) -> None:
        _response(engine, span, response, True)

    return {
        "request_hook": request_hook,
        "response_hook": response_hook,
        "async_request_hook": async_request_hook,
        "async_response_hook": async_response_hook,
    }
