"""ASGI servers (FastAPI, Starlette, any OpenTelemetryMiddleware): hooks only.

The ASGI middleware calls ``client_request_hook`` with every message the app *receives* and
``client_response_hook`` with every message it *sends*, before the server span ends, so bodies
are teed as they pass: nothing is read ahead, nothing is buffered beyond the cap. (If the user
excludes the ``receive``/``send`` spans via ``exclude_spans``, these hooks are not called and only
headers are captured.)
"""

from __future__ import annotations

from typing import Any

from ._engine import (
    REQ_HEADER,
    RESP_HEADER,
    Engine,
    Exchange,
    record_error,
    recording,
    set_attributes,
)
from .body import content_length, find_header

STATE_KEY = "hyperdx.capture"


def _url(scope: dict[str, Any]) -> str:
    scheme = scope.get("scheme", "http")
    server = scope.get("server")
    host = find_header(scope.get("headers") or (), "host")
    if not host and server:
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    path = scope.get("root_path", "") + scope.get("path", "")
    query = scope.get("query_string") or b""
    url = f"{scheme}://{host or 'localhost'}{path}"
    if query:
        url += "?" + query.decode("latin-1")
    return url


def _may_be_excluded(engine: Engine, scope: dict[str, Any], host: str | None) -> bool:
    """False when ``_url(scope)`` cannot start with an excluded endpoint (the SDK's own export
    URLs): its origin, ``scheme://<Host header>``, is none of theirs. Saves building the URL on
    every request; anything unusual is left to the full comparison."""
    origins = engine.excluded_origins
    if origins is None or not host or "/" in host:
        return True
    scheme = scope.get("scheme", "http")
    root, path = scope.get("root_path", ""), scope.get("path", "")
    if not (
        isinstance(scheme, str)
        and scheme.isascii()
        and scheme.isalpha()
        and isinstance(root, str)
        and isinstance(path, str)
        and (root or path).startswith("/")
    ):
        return True
    return f"{scheme}://{host}" in origins


_REQ_TYPE = f"{REQ_HEADER}.content-type"
_REQ_LENGTH = f"{REQ_HEADER}.content-length"
_REQ_HOST = f"{REQ_HEADER}.host"
_RESP_TYPE = f"{RESP_HEADER}.content-type"
_RESP_LENGTH = f"{RESP_HEADER}.content-length"
_RESP_ENCODING = f"{RESP_HEADER}.content-encoding"


def hooks(engine: Engine) -> dict[str, Any]:
    """The three ASGI hooks; each catches and counts its own errors (no decorator frame: the
    response and receive hooks run for every message)."""

    def server_request_hook(span: Any, scope: dict[str, Any]) -> None:
        try:
            _server_request(engine, span, scope)
        except Exception as exc:  # capture must never break the application
            record_error("asgi.server_request_hook", exc)

    def client_request_hook(span: Any, scope: dict[str, Any], message: dict[str, Any]) -> None:
        try:
            ex = scope.get(STATE_KEY)
            if not isinstance(ex, Exchange) or message.get("type") != "http.request":
                return
            ex.request.feed(message.get("body") or b"")
            if not message.get("more_body", False):
                ex.request_seen = True
        except Exception as exc:
            record_error("asgi.client_request_hook", exc)

    def client_response_hook(span: Any, scope: dict[str, Any], message: dict[str, Any]) -> None:
        try:
            ex = scope.get(STATE_KEY)
            if not isinstance(ex, Exchange):
                return
            kind = message.get("type")
            if kind == "http.response.body":
                ex.response.feed(message.get("body") or b"")
                if not message.get("more_body", False):
                    ex.response_seen = True
                    ex.finish()  # the server span ends right after this message is sent
            elif kind == "http.response.start":
                # The attributes and what they say about the body, in one pass over them.
                firsts: dict[str, str | None] = dict.fromkeys(
                    (_RESP_TYPE, _RESP_LENGTH, _RESP_ENCODING)
                )
                attrs = engine.header_attributes(
                    RESP_HEADER, message.get("headers") or (), firsts=firsts
                )
                if attrs:
                    set_attributes(ex.span, attrs)
                ex.response_type = firsts[_RESP_TYPE]
                if firsts[_RESP_ENCODING] is None:
                    ex.response_size = content_length(firsts[_RESP_LENGTH])
        except Exception as exc:
            record_error("asgi.client_response_hook", exc)

    return {
        "server_request_hook": server_request_hook,
        "client_request_hook": client_request_hook,
        "client_response_hook": client_response_hook,
    }


def _server_request(engine: Engine, span: Any, scope: dict[str, Any]) -> None:
    if scope.get("type") != "http" or not recording(span):
        return
    # The headers first: their pass also finds the Host the exclusion pre-check needs.
    firsts: dict[str, str | None] = dict.fromkeys((_REQ_TYPE, _REQ_LENGTH, _REQ_HOST))
    attrs = engine.header_attributes(REQ_HEADER, scope.get("headers") or (), firsts=firsts)
    url: Any = None
    if engine.excluded and _may_be_excluded(engine, scope, firsts[_REQ_HOST]):
        url = _url(scope)
        if engine.is_excluded(url):
            return
    engine.url_updates(span, url or (lambda: _url(scope)), out=attrs)
    if attrs:
        set_attributes(span, attrs)
    ex = Exchange(engine, span, defer=False)
    ex.request_type = firsts[_REQ_TYPE]
    length = firsts[_REQ_LENGTH]
    ex.request_size = content_length(length) if length is not None else None
    scope[STATE_KEY] = ex
