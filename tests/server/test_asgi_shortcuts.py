"""The ASGI request path's shortcuts give what the general code (or contrib) gives: the active
key, the response content length, the decoded header map and the remembered server address."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from opentelemetry.instrumentation.asgi import asgi_getter

from hyperdx.opentelemetry.server import asgi, semconv

HEADER_SETS: list[list[Any]] = [
    [(b"content-length", b"12"), (b"content-type", b"text/plain")],
    [(b"Content-Length", b"7"), (b"content-length", b"9")],
    [(b"content-type", b"a"), (b"CONTENT-LENGTH", b" 30 ")],
    [(b"content-length", b"x")],
    [(b"content-lengt\xc3\xa9", b"5"), (b"content\\x2dlength", b"6")],
    [(b"\xff\xfe", b"\xff"), (b"content-length", b"44")],
    [(b"x-other", b"1")],
    [],
]


@pytest.mark.parametrize("raw", HEADER_SETS)
def test_content_length_is_contribs(raw: list[Any]) -> None:
    found = asgi_getter.get({"headers": raw}, "content-length")
    expected = semconv.as_int(found[0]) if found else None
    assert asgi.content_length(raw) == expected
    mapped = asgi.header_map(raw).get("content-length")
    assert asgi.content_length(raw) == (semconv.as_int(mapped[0]) if mapped else None)


def test_header_map_decodes_as_contrib() -> None:
    raw = [(b"Host", b"a.example"), (b"x-bin", b"\xff\xfe"), ("x-str", "s"), (b"host", b"b")]
    raw.append((b"broken",))  # a malformed entry is skipped
    headers = asgi.header_map(raw)
    assert headers == {
        "host": ["a.example", "b"],
        "x-bin": [b"\xff\xfe".decode("unicode_escape")],
        "x-str": ["s"],
    }


def _scanned_active(attrs: dict[str, Any], mode: semconv.Mode) -> semconv.ActiveKey:
    """The active key as contrib filters it: every attribute scanned, in the attributes' order."""
    keys = (semconv.ACTIVE_OLD if mode.old else set()) | (semconv.ACTIVE_NEW if mode.new else set())
    return tuple((k, v) for k, v in attrs.items() if k in keys)


@pytest.mark.parametrize("old,new", [(True, False), (False, True), (True, True)])
def test_active_key_is_semconvs(old: bool, new: bool) -> None:
    mode = semconv.Mode(old=old, new=new, schema_url="")
    scopes = [
        {"type": "http", "method": m, "scheme": sc, "http_version": "1.1", "path": "/p"}
        for m, sc in itertools.product(["GET", "BREW", ""], ["http", ""])
    ]
    keyed = 0
    for scope, host in itertools.product(scopes, [[], [(b"host", b"h:1")]]):
        scope = {**scope, "server": ("10.0.0.1", 8080), "client": ("1.2.3.4", 5)}
        attrs = asgi.request_attributes(scope, asgi.header_map(host), mode)
        attrs["http.route"] = "/p"
        key = semconv.active_attrs(attrs, mode, asgi.ACTIVE_ORDER)
        assert key == _scanned_active(attrs, mode)
        keyed += bool(key)
    assert keyed >= 10  # all but the requests with neither method nor scheme (new mode)


@pytest.mark.parametrize(
    "server",
    [("127.0.0.1", 8000), ("127.0.0.1", 80), ("127.0.0.1", 8000.0), ["h", 81], ("/sock", None)],
)
def test_server_address_remembered_or_not_is_the_same(server: Any) -> None:
    for _ in range(2):
        assert asgi.server_address(server) == asgi._server_address(server)
    expected_host = {8000: "127.0.0.1:8000", 80: "127.0.0.1", 81: "h:81"}
    if server[1] in (8000, 80, 81) and type(server[1]) is int:
        assert asgi.server_address(server)[0] == expected_host[server[1]]
    assert asgi.server_address(("127.0.0.1", 8000.0))[0] == "127.0.0.1:8000.0"
