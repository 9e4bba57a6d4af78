"""Server spans (Flask, Django, FastAPI, Starlette, aiohttp) on real servers on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import capture_apps
import pytest
from capture_harness import (
    BIG_TEXT,
    SECRET_FORM,
    SECRET_HEADERS,
    SECRET_JSON,
    SECRET_QUERY,
    Tracing,
    assert_no_secrets,
    instrumented,
    payload,
    serve_aiohttp,
    serve_asgi,
    serve_wsgi,
)
from opentelemetry.trace import SpanKind

from hyperdx.opentelemetry.capture import REDACTED, CaptureConfig


@dataclass
class Framework:
    entry: str
    instrumentor: Callable[[], Any]
    make_app: Callable[[], Any]
    serve: Callable[[Any], AbstractContextManager[str]]


def _lean(name: str) -> Any:
    """Our server instrumentor in the default (lean) mode; None with
    HYPERDX_SERVER_INSTRUMENTATION=contrib, so this suite runs against both."""
    from hyperdx.opentelemetry.server import lean_instrumentor

    return lean_instrumentor(name)


def _flask() -> Any:
    if lean := _lean("flask"):
        return lean
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    return FlaskInstrumentor()


def _django() -> Any:
    capture_apps.django_app()  # settings must exist before the instrumentor reads them
    if lean := _lean("django"):
        return lean
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    return DjangoInstrumentor()


def _fastapi() -> Any:
    if lean := _lean("fastapi"):
        return lean
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    return FastAPIInstrumentor()


def _starlette() -> Any:
    if lean := _lean("starlette"):
        return lean
    from opentelemetry.instrumentation.starlette import StarletteInstrumentor

    return StarletteInstrumentor()


def _aiohttp() -> Any:
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    return AioHttpServerInstrumentor()


FRAMEWORKS = {
    "flask": Framework("flask", _flask, capture_apps.flask_app, serve_wsgi),
    "django": Framework("django", _django, capture_apps.django_app, serve_wsgi),
    "django-asgi": Framework("django", _django, capture_apps.django_asgi_app, serve_asgi),
    "fastapi": Framework("fastapi", _fastapi, capture_apps.fastapi_app, serve_asgi),
    "starlette": Framework("starlette", _starlette, capture_apps.starlette_app, serve_asgi),
    "aiohttp": Framework(
        "aiohttp-server", _aiohttp, lambda: capture_apps.aiohttp_app, serve_aiohttp
    ),
}


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def call(
    base: str,
    method: str,
    path: str,
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    body: bytes | None = None,
    chunked: bool = False,
) -> Reply:
    """Raw HTTP/1.1 (http.client is not instrumented here) so we see the wire bytes."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest(method, path)
        for k, v in headers:
            conn.putheader(k, v)
        if chunked and body is not None:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for i in range(0, len(body), 1000):
                piece = body[i : i + 1000]
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        resp = conn.getresponse()
        return Reply(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


@pytest.fixture(params=sorted(FRAMEWORKS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, Tracing]]:
    fw = FRAMEWORKS[request.param]
    tracing = Tracing()
    with instrumented(fw.instrumentor(), fw.entry, tracing), fw.serve(fw.make_app()) as base:
        yield request.param, base, tracing


def _server_span(tracing: Tracing) -> Any:
    return tracing.wait_span(SpanKind.SERVER)


def test_four_attributes_and_url(server: Any) -> None:
    name, base, tracing = server
    body = json.dumps({"hello": "wörld", "n": 1}).encode()
    reply = call(
        base,
        "POST",
        "/echo?page=3",
        [("Content-Type", "application/json"), ("X-Custom", "v1, v2")],
        body,
    )
    assert (reply.status, reply.body) == (200, body)
    attrs = dict(_server_span(tracing).attributes or {})
    assert attrs["http.url"].endswith("/echo?page=3") and attrs["http.url"].startswith("http://")
    assert attrs["http.request.header.x-custom"] == "v1, v2"
    assert attrs["http.request.header.content-type"] == "application/json"
    assert attrs["http.request.body"] == body.decode()
    assert attrs["http.response.header.x-multi"] == "a, b"
    assert attrs["http.response.header.x-comma"] == "x, y"
    assert attrs["http.response.header.content-type"].startswith("application/json")
    assert attrs["http.response.body"] == body.decode()
    assert attrs["http.response.header.set-cookie"] == REDACTED
    assert not [k for k in attrs if ".header." in k and "_" in k.rsplit(".", 1)[1]]


def test_secrets_never_exported(server: Any) -> None:
    name, base, tracing = server
    body = json.dumps(SECRET_JSON).encode()
    headers = [*SECRET_HEADERS, ("Content-Type", "application/json")]
    reply = call(base, "POST", f"/echo?{SECRET_QUERY}", headers, body)
    assert (reply.status, reply.body) == (200, body)
    span = _server_span(tracing)
    assert_no_secrets(span)
    attrs = dict(span.attributes or {})
    assert attrs["http.request.header.authorization"] == REDACTED
    assert attrs["http.request.header.cookie"] == REDACTED
    assert json.loads(attrs["http.request.body"])["password"] == REDACTED

    tracing.clear()
    form_type = ("Content-Type", "application/x-www-form-urlencoded")
    reply = call(base, "POST", "/form", [form_type], SECRET_FORM)
    # the framework still parsed the form it received
    assert reply.status == 200
    assert json.loads(reply.body) == {
        "user": "bob",
        "passwd": "SECRET13",
        "ssn": "SECRET14",
        "note": "hello",
    }
    span = _server_span(tracing)
    assert_no_secrets(span)
    form = span.attributes["http.request.body"]
    assert form == f"user=bob&passwd={REDACTED}&ssn={REDACTED}&note=hello"
    assert "SECRET" not in span.attributes["http.response.body"]


@pytest.mark.parametrize("what", ["big", "binary", "latin1", "stream", "json"])
def test_response_bodies_identical(server: Any, what: str) -> None:
    name, base, tracing = server
    if name == "django-asgi" and what == "stream":
        pytest.skip("Django on ASGI: streamed responses are not teed (size only)")
    expected, _ = payload(what)
    reply = call(base, "GET", f"/payload/{what}")
    assert reply.status == 200 and reply.body == expected
    span = _server_span(tracing)
    assert_no_secrets(span)
    attrs = dict(span.attributes or {})
    if what == "binary":
        assert "http.response.body" not in attrs
        assert attrs.get("http.response.body.size") == len(expected)
    elif what in ("big", "stream"):
        assert attrs["http.response.body"] == expected[:4096].decode()
        assert attrs["http.response.body.truncated"] is True
        assert attrs["http.response.body.size"] == len(expected)
    elif what == "latin1":
        assert attrs["http.response.body"] == "café crème, naïve"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_request_body_reaches_app(server: Any, chunked: bool) -> None:
    name, base, tracing = server
    if chunked and name == "django":
        pytest.skip("Django's WSGI handler needs Content-Length for request bodies")
    reply = call(base, "POST", "/echo", [("Content-Type", "text/plain")], BIG_TEXT, chunked)
    assert reply.status == 200 and reply.body == BIG_TEXT
    attrs = dict(_server_span(tracing).attributes or {})
    assert attrs["http.request.body"] == BIG_TEXT[:4096].decode()
    assert attrs["http.request.body.truncated"] is True
    assert attrs["http.request.body.size"] == len(BIG_TEXT)


@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_bodies_identical_with_capture_off(name: str) -> None:
    """The reference run: capture off gives the same bytes the capture-on tests assert, and
    adds no capture attributes."""
    fw = FRAMEWORKS[name]
    tracing = Tracing()
    with (
        instrumented(fw.instrumentor(), fw.entry, tracing, config=CaptureConfig()),
        fw.serve(fw.make_app()) as base,
    ):
        for what in ("big", "binary", "latin1", "stream"):
            assert call(base, "GET", f"/payload/{what}").body == payload(what)[0]
        tracing.clear()
        reply = call(base, "POST", "/echo", [("Content-Type", "text/plain")], BIG_TEXT)
        assert reply.body == BIG_TEXT
        attrs = dict(tracing.wait_span(SpanKind.SERVER).attributes or {})
        assert not [k for k in attrs if ".body" in k or k.startswith("http.request.header.")]


@pytest.mark.parametrize("name", ["flask", "fastapi", "aiohttp"])
def test_capture_error_never_reaches_app(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: body formatting fails; the app and its span are unaffected otherwise."""
    from hyperdx.opentelemetry.capture import _engine, capture_errors

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(_engine, "body_attributes", broken)
    fw = FRAMEWORKS[name]
    tracing = Tracing()
    before = capture_errors()
    with instrumented(fw.instrumentor(), fw.entry, tracing), fw.serve(fw.make_app()) as base:
        for _ in range(2):
            tracing.clear()
            reply = call(base, "POST", "/echo", [("Content-Type", "text/plain")], BIG_TEXT)
            assert (reply.status, reply.body) == (200, BIG_TEXT)
            span = _server_span(tracing)
            attrs = dict(span.attributes or {})
            assert attrs["http.request.header.content-type"] == "text/plain"
            assert "http.request.body" not in attrs
            assert not [e for e in span.events if e.name == "exception"]
    assert capture_errors() >= before + 2


def test_captured_wsgi_request_is_freed_by_reference_counting() -> None:
    """A finished exchange leaves no reference cycle (environ <-> state, exchange <-> deferred
    span end): its objects go when the server drops the environ, not at the next GC pass."""
    import gc
    import io
    import sys
    import weakref

    from hyperdx.opentelemetry.capture.wsgi import STATE_KEY

    fw = FRAMEWORKS["flask"]
    tracing = Tracing()
    body = json.dumps({"password": "SECRET08", "n": 1}).encode()
    with instrumented(fw.instrumentor(), fw.entry, tracing):
        app = fw.make_app()
        gc.collect()
        gc.disable()
        try:
            environ: dict[str, Any] = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/echo",
                "SCRIPT_NAME": "",
                "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "HTTP_HOST": "127.0.0.1",
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(body)),
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(body),
                "wsgi.errors": sys.stderr,
            }
            result = app(environ, lambda status, headers, exc_info=None: None)
            assert b"".join(result) == body
            result.close()
            state = weakref.ref(environ[STATE_KEY])
            del environ, result
            assert state() is None
        finally:
            gc.enable()
    attrs = dict(_server_span(tracing).attributes or {})
    assert json.loads(attrs["http.request.body"]) == {"password": REDACTED, "n": 1}
    assert attrs["http.response.body.size"] == len(body)
