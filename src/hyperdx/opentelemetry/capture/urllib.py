"""urllib.request client spans: hooks for URLLibInstrumentor.

The response is never read by us: its read methods are shadowed on the instance so that what the
application reads passes through a tee, and the span ends (with its original end time) once the
body has been read to the end, the response is closed, or it goes stale.
"""

from __future__ import annotations

import weakref
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
_READERS = ("read", "read1", "readline", "readinto", "readinto1")


def _tee_response(resp: Any, ex: Exchange) -> bool:
    """Shadow the read methods of an ``http.client.HTTPResponse``; False if not possible."""
    target = resp
    fp = getattr(resp, "fp", None)
    if not hasattr(resp, "isclosed") and fp is not None and hasattr(fp, "isclosed"):
        target = fp  # HTTPError / addinfourl wrap the real response
    if not hasattr(target, "isclosed") or not hasattr(target, "__dict__"):
        return False
    busy = False
    closed_ref = weakref.ref(target)

    def done() -> None:
        ex.response_seen = True
        ex.finish()

    def check_eof(result: Any) -> None:
        obj = closed_ref()
        if not result or (obj is not None and obj.isclosed()):
            done()

    def wrap(name: str) -> None:
        original = getattr(target, name, None)
        if original is None:
            return

        def reader(*args: Any, **kwargs: Any) -> Any:
            nonlocal busy
            if busy:  # read() calls readinto() internally: count bytes once
                return original(*args, **kwargs)
            busy = True
            try:
                result = original(*args, **kwargs)
            finally:
                busy = False
            try:
                if name.startswith("readinto"):
                    n = result or 0
                    ex.response.feed(memoryview(args[0])[:n].tobytes() if n else b"")
                    check_eof(n)
                else:
                    ex.response.feed(result)
                    check_eof(result)
            except Exception as exc:
                record_error("urllib.read", exc)
            return result

        target.__dict__[name] = reader

    for name in _READERS:
        wrap(name)
    original_close = target.close

    def close() -> None:
        try:
            original_close()
        finally:
            ex.finish()

    target.__dict__["close"] = close
    ex.defer()
    weakref.finalize(target, ex.finish)
    return True


def hooks(engine: Engine) -> dict[str, Any]:
    @guarded("urllib.request_hook")
    def request_hook(span: Any, request: Any) -> None:
        url = request.full_url
        if not recording(span) or engine.is_excluded(url):
            return
        items = list(request.header_items())
        span.__dict__[_KEY] = client_exchange(engine, span, url, items, request.data)

    @guarded("urllib.response_hook")
    def response_hook(span: Any, request: Any, response: Any) -> None:
        ex = span.__dict__.pop(_KEY, None)
        if ex is None:
            return
        try:
            if response is None or not recording(span):
                return
            items = list(response.headers.items())
            engine.headers(span, RESP_HEADER, items)
            ex.response_type = find_header(items, "content-type")
            if find_header(items, "content-encoding") is None:
                ex.response_size = content_length(find_header(items, "content-length"))
            if _tee_response(response, ex):
                ex = None  # finished by the tee
        finally:
            if ex is not None:
                ex.finish()

    return {"request_hook": request_hook, "response_hook": response_hook}
