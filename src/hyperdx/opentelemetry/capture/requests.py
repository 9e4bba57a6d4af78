"""requests client spans: hooks for RequestsInstrumentor.

With ``stream=False`` (the default) requests has read the body before our hook runs; with
``stream=True`` the underlying urllib3 response is teed as the application reads it.
"""

from __future__ import annotations

from typing import Any

from ._engine import RESP_HEADER, Engine, client_exchange, guarded, recording
from .body import content_length
from .urllib3 import tee_response

_KEY = "_hyperdx_capture"


def hooks(engine: Engine) -> dict[str, Any]:
    @guarded("requests.request_hook")
    def request_hook(span: Any, request: Any) -> None:
        if not recording(span) or engine.is_excluded(request.url):
            return
        items = list((request.headers or {}).items())
        span.__dict__[_KEY] = client_exchange(engine, span, request.url, items, request.body)

    @guarded("requests.response_hook")
    def response_hook(span: Any, request: Any, response: Any) -> None:
        ex = span.__dict__.pop(_KEY, None)
        if ex is None or not recording(span):
            return
        headers = response.headers
        engine.headers(span, RESP_HEADER, headers.items())
        ex.response_type = headers.get("Content-Type")
        content = response.__dict__.get("_content")
        if response.__dict__.get("_content_consumed") and isinstance(content, bytes):
            ex.response.feed(content)
            ex.response_seen = True
            ex.finish()
            return
        if not headers.get("Content-Encoding"):
            ex.response_size = content_length(headers.get("Content-Length"))
        raw = response.__dict__.get("raw")
        if raw is None or not tee_response(raw, ex):
            ex.finish()

    return {"request_hook": request_hook, "response_hook": response_hook}
