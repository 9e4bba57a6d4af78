"""Client spans (requests, httpx sync/async, urllib, urllib3, aiohttp) against a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from capture_harness import (
    BIG_TEXT,
    SECRET_FORM,
    SECRET_HEADERS,
    SECRET_JSON,
    SECRET_QUERY,
    SECRET_SET_COOKIE,
    STREAM_CHUNKS,
    Tracing,
    assert_no_secrets,
    instrumented,
    payload,
    serve_wsgi,
)
from opentelemetry.trace import SpanKind

from hyperdx.opentelemetry.capture import REDACTED

Reply = tuple[int, bytes]


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    """Plain WSGI (not instrumented): echoes POST bodies, serves fixed payloads."""
    path = environ["PATH_INFO"]
    if path.startswith("/payload/"):
        body, ctype = payload(path.rsplit("/", 1)[1])
        if path.endswith("stream"):
            start_response("200 OK", [("Content-Type", ctype)])
            return iter(STREAM_CHUNKS)
        start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    headers = [
        ("Content-Type", environ.get("CONTENT_TYPE") or "application/octet-stream"),
        ("Content-Length", str(len(body))),
        ("X-Multi", "a"),
        ("X-Multi", "b"),
        ("X-Comma", "x, y"),
        ("Set-Cookie", SECRET_SET_COOKIE),
        ("Set-Cookie", "other=SECRET18"),
    ]
    start_response("200 OK", headers)
    return [body]


def c_requests(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Reply:
    import requests

    r = requests.request(method, url, headers=headers, data=body, timeout=10)
    return r.status_code, r.content


def c_requests_stream(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Reply:
    import requests

    with requests.request(method, url, headers=headers, data=body, stream=True, timeout=10) as r:
        return r.status_code, b"".join(r.iter_content(1000))


def c_httpx(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Reply:
    import httpx

    with httpx.Client() as client:
        r = client.request(method, url, headers=headers, content=body)
        return r.status_code, r.content


def c_httpx_stream(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Reply:
    import httpx

    with httpx.Client() as client, client.stream(method, url, headers=headers, content=body) as r:
        return r.status_code, b"".join(r.iter_bytes())


def c_httpx_async(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Reply:
    import httpx

    async def go() -> Reply:
        async with httpx.AsyncClient() as client:
            r = await client.request(method, url, headers=headers, content=body)
            return r.status_code, r.content

    return asyncio.run(go())


def c_urllib(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Reply:
    import urllib.request

    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()


def c_urllib_lines(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Reply:
    import urllib.request

    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    r = urllib.request.urlopen(req, timeout=10)
    data = r.read(7) + b"".join(iter(lambda: r.read(1000), b""))
    r.close()
    return r.status, data


def c_urllib3(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Reply:
    import urllib3

    r = urllib3.PoolManager().request(method, url, headers=headers, body=body)
    return r.status, r.data


def c_urllib3_stream(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Reply:
    import urllib3

    r = urllib3.PoolManager().request(
        method, url, headers=headers, body=body, preload_content=False
    )
    data = b"".join(r.stream(1000))
    r.release_conn()
    return r.status, data


def c_aiohttp(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Reply:
    import aiohttp

    async def go() -> Reply:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, headers=headers, data=body) as r,
        ):
            return r.status, await r.read()

    return asyncio.run(go())


def _instrumentor(name: str) -> Any:
    if name == "requests":
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        return RequestsInstrumentor()
    if name == "httpx":
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        return HTTPXClientInstrumentor()
    if name == "urllib":
        from opentelemetry.instrumentation.urllib import URLLibInstrumentor

        return URLLibInstrumentor()
    if name == "urllib3":
        from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

        return URLLib3Instrumentor()
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    return AioHttpClientInstrumentor()


CLIENTS = {
    "requests": ("requests", c_requests),
    "requests-stream": ("requests", c_requests_stream),
    "httpx": ("httpx", c_httpx),
    "httpx-stream": ("httpx", c_httpx_stream),
    "httpx-async": ("httpx", c_httpx_async),
    "urllib": ("urllib", c_urllib),
    "urllib-partial-reads": ("urllib", c_urllib_lines),
    "urllib3": ("urllib3", c_urllib3),
    "urllib3-stream": ("urllib3", c_urllib3_stream),
    "aiohttp": ("aiohttp-client", c_aiohttp),
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_wsgi(echo_app) as url:
        yield url


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> Iterator[tuple[str, Callable[..., Reply], Tracing]]:
    entry, fn = CLIENTS[request.param]
    tracing = Tracing()
    with instrumented(_instrumentor(entry), entry, tracing):
        yield request.param, fn, tracing


def test_four_attributes_and_url(server: str, client: Any) -> None:
    label, call, tracing = client
    body = json.dumps({"hello": "world", "n": 1}).encode()
    url = f"{server}/echo?page=3"
    status, got = call(
        "POST", url, {"Content-Type": "application/json", "X-Custom": "v1, v2"}, body
    )
    assert (status, got) == (200, body)
    span = tracing.wait_span(SpanKind.CLIENT)
    attrs = dict(span.attributes or {})
    assert attrs["http.url"] == url
    assert attrs["http.request.header.x-custom"] == "v1, v2"
    assert attrs["http.request.header.content-type"] == "application/json"
    assert attrs["http.request.body"] == body.decode()
    assert attrs["http.response.header.x-multi"] == "a, b"
    assert attrs["http.response.header.x-comma"] == "x, y"
    assert attrs["http.response.header.content-type"] == "application/json"
    assert attrs["http.response.body"] == body.decode()
    # one spelling, strings only
    assert not [k for k in attrs if k.startswith("http.request.header.") and "_" in k]
    assert all(
        isinstance(v, str) for k, v in attrs.items() if k.startswith("http.") and ".header." in k
    )


def test_secrets_never_exported(server: str, client: Any) -> None:
    label, call, tracing = client
    headers = dict(SECRET_HEADERS) | {"Content-Type": "application/json"}
    body = json.dumps(SECRET_JSON).encode()
    status, got = call("POST", f"{server}/echo?{SECRET_QUERY}", headers, body)
    assert (status, got) == (200, body)
    span = tracing.wait_span(SpanKind.CLIENT)
    assert_no_secrets(span)
    attrs = dict(span.attributes or {})
    assert attrs["http.request.header.authorization"] == REDACTED
    assert attrs["http.response.header.set-cookie"] == REDACTED
    assert "q=visible" in attrs["http.url"] and f"access_token={REDACTED}" in attrs["http.url"]
    sent = json.loads(attrs["http.request.body"])
    assert sent["user"] == "bob" and sent["password"] == REDACTED
    assert sent["profile"]["items"][0]["token"] == REDACTED
    assert sent["profile"]["items"][1] == {"ok": 1}

    tracing.clear()
    form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert call("POST", f"{server}/echo", form_headers, SECRET_FORM) == (200, SECRET_FORM)
    span = tracing.wait_span(SpanKind.CLIENT)
    assert_no_secrets(span)
    assert (
        span.attributes["http.request.body"]
        == f"user=bob&passwd={REDACTED}&ssn={REDACTED}&note=hello"
    )


@pytest.mark.parametrize("name", ["big", "binary", "latin1", "stream", "json"])
def test_bodies_identical_and_described(server: str, client: Any, name: str) -> None:
    label, call, tracing = client
    expected, ctype = payload(name)
    status, got = call("GET", f"{server}/payload/{name}", {}, None)
    assert status == 200 and got == expected
    span = tracing.wait_span(SpanKind.CLIENT)
    attrs = dict(span.attributes or {})
    assert_no_secrets(span)
    if name == "binary":
        assert "http.response.body" not in attrs
        assert attrs["http.response.body.size"] == len(expected)
    elif name in ("big", "stream"):
        assert attrs["http.response.body"] == expected[:4096].decode()
        assert attrs["http.response.body.truncated"] is True
        assert attrs["http.response.body.size"] == len(expected)
    elif name == "latin1":
        assert attrs["http.response.body"] == "café crème, naïve"
        assert "http.response.body.truncated" not in attrs


def test_large_request_body_capped(server: str, client: Any) -> None:
    label, call, tracing = client
    headers = {"Content-Type": "text/plain"}
    assert call("POST", f"{server}/echo", headers, BIG_TEXT) == (200, BIG_TEXT)
    attrs = dict(tracing.wait_span(SpanKind.CLIENT).attributes or {})
    assert attrs["http.request.body"] == BIG_TEXT[:4096].decode()
    assert attrs["http.request.body.truncated"] is True
    assert attrs["http.request.body.size"] == len(BIG_TEXT)


def test_capture_off_adds_nothing(server: str) -> None:
    from hyperdx.opentelemetry.capture import CaptureConfig, instrumentor_kwargs

    assert instrumentor_kwargs("requests", CaptureConfig(enabled=False)) == {}
    tracing = Tracing()
    with instrumented(_instrumentor("requests"), "requests", tracing, config=None):
        assert c_requests("POST", f"{server}/echo", {"X-A": "1"}, b"abc") == (200, b"abc")
    attrs = dict(tracing.wait_span(SpanKind.CLIENT).attributes or {})
    assert not [k for k in attrs if ".header." in k or ".body" in k]
