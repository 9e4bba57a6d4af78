"""urllib3 client spans: hooks for URLLib3Instrumentor.

With ``preload_content=True`` (urllib3's default) the body is already in the response; a
response the application streams is left alone and recorded by its declared size.
"""

from __future__ import annotations

from typing import Any

from ._engine import REQ_HEADER, RESP_HEADER, Engine, Exchange, guarded, recording
from .body import content_length, find_header

_KEY = "_hyperdx_capture"


def hooks(engine: Engine) -> dict[str, Any]:
    @guarded("urllib3.request_hook")
    def request_hook(span: Any, pool: Any, info: Any) -> None:
        if not recording(span) or engine.is_excluded(info.url):
            return
        ex = Exchange(engine, span, defer=False)
        items = list((info.headers or {}).items())
        engine.set_url(span, info.url)
        engine.headers(span, REQ_HEADER, items)
        ex.request_type = find_header(items, "content-type")
        body = info.body
        if isinstance(body, (bytes, bytearray, str)):
            ex.request.feed(body)
            ex.request_seen = True
        else:
            ex.request_size = content_length(find_header(items, "content-length"))
        span.__dict__[_KEY] = ex

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
        elif find_header(items, "content-encoding") is None:
            ex.response_size = content_length(find_header(items, "content-length"))
        ex.finish()

    return {"request_hook": request_hook, "response_hook": response_hook}
