"""aiohttp client spans: a TraceConfig plus hooks for AioHttpClientInstrumentor.

The instrumentation's hooks give us the span; our own TraceConfig (passed through the
instrumentor's ``trace_configs`` argument) sees request body chunks as they are sent and the
response body when the application reads it (``read()``/``text()``/``json()``). The span's end is
held (original end time kept) until then; a response streamed through ``.content`` is recorded
by its declared size when it is released or garbage-collected.
"""

from __future__ import annotations

import contextvars
import types
import weakref
from typing import Any

from ._engine import REQ_HEADER, RESP_HEADER, Engine, Exchange, guarded, recording
from .body import content_length, find_header

_pending: contextvars.ContextVar[Any] = contextvars.ContextVar("hyperdx_aiohttp_capture")


class _Slot:
    """Links our TraceConfig context with the instrumentation's span for one request."""

    __slots__ = ("headers", "exchange")

    def __init__(self, headers: Any) -> None:
        self.headers = headers
        self.exchange: Exchange | None = None


def _items(headers: Any) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.items()]


def trace_config(engine: Engine) -> Any:
    import aiohttp

    async def on_request_start(session: Any, ctx: types.SimpleNamespace, params: Any) -> None:
        slot = _Slot(params.headers)
        ctx.hyperdx_slot = slot
        _pending.set(slot)

    async def on_request_chunk_sent(session: Any, ctx: types.SimpleNamespace, params: Any) -> None:
        _chunk_sent(ctx, params)

    async def on_response_chunk_received(
        session: Any, ctx: types.SimpleNamespace, params: Any
    ) -> None:
        _chunk_received(ctx, params)

    async def on_request_headers_sent(
        session: Any, ctx: types.SimpleNamespace, params: Any
    ) -> None:
        _headers_sent(ctx, params)

    @guarded("aiohttp_client.headers_sent")
    def _headers_sent(ctx: types.SimpleNamespace, params: Any) -> None:
        slot = getattr(ctx, "hyperdx_slot", None)
        if slot is not None and slot.exchange is not None:
            items = _items(params.headers)  # the headers as sent, incl. Content-Type for json=
            engine.headers(slot.exchange.span, REQ_HEADER, items)
            slot.exchange.request_type = find_header(items, "content-type")

    @guarded("aiohttp_client.request_chunk")
    def _chunk_sent(ctx: types.SimpleNamespace, params: Any) -> None:
        slot = getattr(ctx, "hyperdx_slot", None)
        if slot is not None and slot.exchange is not None:
            slot.exchange.request.feed(params.chunk)

    @guarded("aiohttp_client.response_chunk")
    def _chunk_received(ctx: types.SimpleNamespace, params: Any) -> None:
        slot = getattr(ctx, "hyperdx_slot", None)
        if slot is not None and slot.exchange is not None:
            ex = slot.exchange
            ex.response.feed(params.chunk)
            ex.response_seen = True  # aiohttp signals the whole body once, from read()
            ex.finish()

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_request_start)
    config.on_request_headers_sent.append(on_request_headers_sent)
    config.on_request_chunk_sent.append(on_request_chunk_sent)
    config.on_response_chunk_received.append(on_response_chunk_received)
    config._hyperdx_capture = True  # type: ignore[attr-defined]
    return config


def hooks(engine: Engine) -> dict[str, Any]:
    @guarded("aiohttp_client.request_hook")
    def request_hook(span: Any, params: Any) -> None:
        slot = _pending.get(None)
        if slot is None or slot.headers is not params.headers:
            return  # a session created without our TraceConfig
        _pending.set(None)
        url = str(params.url)
        if not recording(span) or engine.is_excluded(url):
            return
        items = _items(params.headers)
        engine.set_url(span, url)
        engine.headers(span, REQ_HEADER, items)
        ex = Exchange(engine, span, defer=False)
        ex.request_type = find_header(items, "content-type")
        ex.request_seen = True
        slot.exchange = ex
        span.__dict__["_hyperdx_capture"] = ex

    @guarded("aiohttp_client.response_hook")
    def response_hook(span: Any, params: Any) -> None:
        ex: Exchange | None = span.__dict__.pop("_hyperdx_capture", None)
        if ex is None:
            return
        response = getattr(params, "response", None)
        if response is None or not recording(span):
            ex.finish()  # an exception: nothing more will come
            return
        items = _items(response.headers)
        engine.headers(span, RESP_HEADER, items)
        ex.response_type = find_header(items, "content-type")
        if find_header(items, "content-encoding") is None:
            ex.response_size = content_length(find_header(items, "content-length"))
        ex.defer()
        weakref.finalize(response, ex.finish)

    return {"request_hook": request_hook, "response_hook": response_hook}
