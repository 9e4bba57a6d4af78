"""urllib3 client spans: hooks for URLLib3Instrumentor (and the stream tee requests uses).

With ``preload_content=True`` (urllib3's default) the body is already in the response. A
response the application streams (``preload_content=False``; requests' ``stream=True``) gets
its read methods shadowed on the instance, so what the application reads passes through a tee;
the span ends, with its original end time, once the body is read to the end or released.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from ._engine import (
    RESP_HEADER,
    Engine,
    Exchange,
    client_exchange,
    guarded,
    record_error,
    recording,
)
from .body import content_length, find_header

_KEY = "_hyperdx_capture"


def _drained(resp: Any) -> bool:
    try:
        return bool(resp.closed) and not len(getattr(resp, "_decoded_buffer", b""))
    except Exception as exc:
        record_error("urllib3.drained", exc)
        return True


def tee_response(resp: Any, ex: Exchange) -> bool:
    """Tee a urllib3 ``HTTPResponse`` the application will read; False if not possible."""
    if not hasattr(resp, "__dict__") or not hasattr(resp, "read_chunked"):
        return False
    busy = False
    ref = weakref.ref(resp)

    def done() -> None:
        ex.response_seen = True
        ex.finish()

    def feed(data: Any) -> None:
        try:
            ex.response.feed(data)
            obj = ref()
            if not data or obj is None or _drained(obj):
                done()
        except Exception as exc:
            record_error("urllib3.read", exc)

    def wrap_read(name: str) -> None:
        original = getattr(resp, name)

        def reader(*args: Any, **kwargs: Any) -> Any:
            nonlocal busy
            if busy:  # nested calls (read1 -> read): count bytes once
                return original(*args, **kwargs)
            busy = True
            try:
                data = original(*args, **kwargs)
            finally:
                busy = False
            feed(data)
            return data

        resp.__dict__[name] = reader

    original_chunked = resp.read_chunked

    def read_chunked(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        nonlocal busy
        busy = True
        try:
            for chunk in original_chunked(*args, **kwargs):
                try:
                    ex.response.feed(chunk)
                except Exception as exc:
                    record_error("urllib3.read_chunked", exc)
                yield chunk
        finally:
            busy = False
        done()

    for name in ("read", "read1"):
        if hasattr(resp, name):
            wrap_read(name)
    resp.__dict__["read_chunked"] = read_chunked

    def then_finish(original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return original(*args, **kwargs)
            finally:
                if not busy:  # urllib3 releases inside read(), before returning the data
                    ex.finish()

        return call

    for name in ("release_conn", "close"):
        original = getattr(resp, name, None)
        if original is not None:
            resp.__dict__[name] = then_finish(original)
    ex.defer()
    weakref.finalize(resp, ex.finish)
    return True


def hooks(engine: Engine) -> dict[str, Any]:
    @guarded("urllib3.request_hook")
    def request_hook(span: Any, pool: Any, info: Any) -> None:
        if not recording(span) or engine.is_excluded(info.url):
            return
        items = list((info.headers or {}).items())
        span.__dict__[_KEY] = client_exchange(engine, span, info.url, items, info.body)

    @guarded("urllib3.response_hook")
    def response_hook(span: Any, pool: Any, response: Any) -> None:
        ex = span.__dict__.pop(_KEY, None)
        if ex is None or not recording(span):
            return
        items = list(response.headers.items())
        engine.headers(span, RESP_HEADER, items)
        ex.response_type = find_header(items, "content-type")
        body = getattr(response, "_body", None)
        if isinstance(body, bytes):
            ex.response.feed(body)
            ex.response_seen = True
            ex.finish()
            return
        if find_header(items, "content-encoding") is None:
            ex.response_size = content_length(find_header(items, "content-length"))
        if not tee_response(response, ex):
            ex.finish()

    return {"request_hook": request_hook, "response_hook": response_hook}
