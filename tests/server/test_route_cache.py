"""The memoised route lookup gives contrib's answer (its own ``_get_route_details`` is the
oracle) for every request, first and repeated: Mount, Host, 405 partial matches, websockets,
root paths, included routers, custom routes; after the routes change; and it stays bounded."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from opentelemetry.instrumentation.fastapi import _get_route_details as contrib_fastapi_route
from opentelemetry.instrumentation.starlette import (
    _get_route_details as contrib_starlette_route,
)
from starlette.routing import Match

from hyperdx.opentelemetry.server import route_cache
from hyperdx.opentelemetry.server.fastapi import FASTAPI
from hyperdx.opentelemetry.server.starlette import STARLETTE

PATHS = [
    "/",
    "/items",
    "/items/7",
    "/items/x",
    "/items/7/",
    "/users/me",
    "/users/42",
    "/api/orders/9",
    "/api/orders",
    "/api/v2/refunds/3",
    "/api/files/a/b.txt",
    "/sub",
    "/sub/",
    "/sub/page",
    "/sub/nothing",
    "/ws",
    "/late",
    "/nowhere",
    "",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "BREW"]
HOSTS = [b"127.0.0.1:8000", b"api.example.com", b"shop.example.com:8443", None]
ROOTS = ["", "/root", ("/root", "")]  # a root path, or a path prefix that is not the root


def scope_of(
    app: Any, kind: str, path: str, method: str, host: bytes | None, root: str | tuple[str, str]
) -> Any:
    prefix, root = root if isinstance(root, tuple) else (root, root)
    headers = [(b"accept", b"*/*")] + ([(b"host", host)] if host is not None else [])
    scope: dict[str, Any] = {
        "type": kind,
        "path": prefix + path,
        "root_path": root,
        "headers": headers,
        "app": app,
    }
    if kind == "http":
        scope["method"] = method
    return scope


def scopes(app: Any) -> list[dict[str, Any]]:
    grid = itertools.product(["http", "websocket"], PATHS, METHODS, HOSTS, ROOTS)
    return [scope_of(app, *row) for row in grid]


def assert_same_as_contrib(framework: Any, oracle: Any, app: Any) -> int:
    """Every scope twice (a miss, then a memo hit); returns how many answers were routes."""
    routed = 0
    for _ in range(2):
        for scope in scopes(app):
            expected = oracle(dict(scope))
            assert framework.route(dict(scope)) == expected, scope
            routed += expected is not None
    return routed


async def endpoint(*args: Any) -> Any:
    from starlette.responses import PlainTextResponse

    return PlainTextResponse("ok")


def fastapi_app() -> Any:
    from fastapi import APIRouter, FastAPI
    from starlette.applications import Starlette
    from starlette.routing import Route

    app = FastAPI()
    app.get("/items/{item_id}")(endpoint)
    app.post("/items")(endpoint)
    app.get("/users/me")(endpoint)
    app.put("/users/{uid}")(endpoint)
    app.websocket("/ws")(endpoint)
    orders = APIRouter()
    orders.get("/orders/{oid}")(endpoint)
    orders.delete("/orders/{oid}")(endpoint)
    refunds = APIRouter()
    refunds.post("/refunds/{rid}")(endpoint)
    orders.include_router(refunds, prefix="/v2")
    app.include_router(orders, prefix="/api")
    app.mount("/sub", Starlette(routes=[Route("/page", endpoint)]))
    app.host("{tenant}.example.com", Starlette(routes=[Route("/", endpoint)]))
    return app


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Host, Mount, Route, WebSocketRoute

    return Starlette(
        routes=[
            Route("/items/{item_id:int}", endpoint, methods=["GET"]),
            Route("/items", endpoint, methods=["POST"]),
            Route("/users/me", endpoint),
            Route("/users/{uid}", endpoint, methods=["PUT", "DELETE"]),
            WebSocketRoute("/ws", endpoint),
            Mount("/api/files", routes=[Route("/{name:path}", endpoint)]),
            Mount("/sub", routes=[Route("/page", endpoint)]),
            Host("api.example.com", Starlette(routes=[Route("/", endpoint)])),
        ]
    )


def test_fastapi_routes_are_contribs_and_memoised() -> None:
    app = fastapi_app()
    assert assert_same_as_contrib(FASTAPI, contrib_fastapi_route, app) > 100
    table = FASTAPI.table(app)
    assert table.memo, "every route here is a known one: the answers are memoised"
    assert table.reads_host and table.reads_fastapi and table.version is not None
    assert len(table.memo) <= route_cache.MEMO_SIZE


def test_starlette_routes_are_contribs_and_memoised() -> None:
    app = starlette_app()
    assert assert_same_as_contrib(STARLETTE, contrib_starlette_route, app) > 100
    table = STARLETTE.table(app)
    assert table.memo and table.reads_host and not table.reads_fastapi


def test_a_405_names_the_last_partial_match() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    app = Starlette(
        routes=[
            Route("/a/{x}", endpoint, methods=["PUT"]),
            Route("/a/b", endpoint, methods=["POST"]),
        ]
    )
    for _ in range(2):
        assert STARLETTE.route(scope_of(app, "http", "/a/b", "GET", None, "")) == "/a/b"
        assert STARLETTE.route(scope_of(app, "http", "/a/c", "GET", None, "")) == "/a/{x}"
        assert STARLETTE.route(scope_of(app, "http", "/a/b", "PUT", None, "")) == "/a/{x}"


def test_host_routes_answer_by_the_host_header() -> None:
    """A Host route's full match names the request path (starlette; FastAPI's route context
    has a ``path`` of None there, so contrib, and we, give no route)."""
    for _ in range(2):
        app = starlette_app()
        for _ in range(2):
            at = [
                STARLETTE.route(scope_of(app, "http", "/zzz", "GET", host, ""))
                for host in (b"api.example.com", b"API.example.com:80", b"localhost", None)
            ]
            assert at == ["/zzz", "/zzz", None, None]
        app = fastapi_app()
        scope = scope_of(app, "http", "/zzz", "GET", b"shop.example.com", "")
        assert FASTAPI.route(dict(scope)) is contrib_fastapi_route(dict(scope)) is None


def test_a_custom_matches_is_never_memoised() -> None:
    """A route whose matches reads something else (here a header): looked up every time."""
    from fastapi import FastAPI
    from fastapi.routing import APIRoute

    class ByVersion(APIRoute):
        def matches(self, scope: dict[str, Any]) -> tuple[Match, dict[str, Any]]:
            if (b"x-version", b"2") not in scope["headers"]:
                return Match.NONE, {}
            return super().matches(scope)

    class Plain(APIRoute):  # a custom class that does not change matching: still memoised
        pass

    app = FastAPI()
    app.router.route_class = ByVersion
    app.get("/v/{x}")(endpoint)
    for version, expected in ((b"1", None), (b"2", "/v/{x}"), (b"1", None), (b"2", "/v/{x}")):
        scope = scope_of(app, "http", "/v/1", "GET", None, "")
        scope["headers"].append((b"x-version", version))
        assert FASTAPI.route(dict(scope)) == contrib_fastapi_route(dict(scope)) == expected
    assert FASTAPI.table(app).memo is None

    plain = FastAPI()
    plain.router.route_class = Plain
    plain.get("/p/{x}")(endpoint)
    assert FASTAPI.route(scope_of(plain, "http", "/p/1", "GET", None, "")) == "/p/{x}"
    assert FASTAPI.table(plain).memo


def test_a_selected_fastapi_route_context_is_not_memoised() -> None:
    """APIRoute.matches defers to a route context a router already selected in the scope."""
    from types import SimpleNamespace

    app = fastapi_app()
    items = next(r for r in app.routes if getattr(r, "path", "") == "/items/{item_id}")
    selected = SimpleNamespace(original_route=items, matches=lambda scope: (Match.NONE, {}))
    for _ in range(2):
        scope = scope_of(app, "http", "/items/7", "GET", None, "")
        assert FASTAPI.route(dict(scope)) == "/items/{item_id}"
        scope["fastapi"] = {"effective_route_context": selected}
        assert FASTAPI.route(dict(scope)) is contrib_fastapi_route(dict(scope)) is None


def test_route_changes_are_seen() -> None:
    from fastapi import APIRouter, FastAPI

    app = FastAPI()
    app.get("/items/{item_id}")(endpoint)
    late = APIRouter()
    app.include_router(late, prefix="/api")
    late_scope = scope_of(app, "http", "/late", "GET", None, "")
    api_scope = scope_of(app, "http", "/api/orders/9", "GET", None, "")
    assert FASTAPI.route(dict(late_scope)) is None
    assert FASTAPI.route(dict(api_scope)) is None
    app.get("/late")(endpoint)  # the app's route list grows
    assert FASTAPI.route(dict(late_scope)) == contrib_fastapi_route(dict(late_scope)) == "/late"
    late.get("/orders/{oid}")(endpoint)  # an included router grows, the app's list does not
    assert FASTAPI.route(dict(api_scope)) == contrib_fastapi_route(dict(api_scope))
    assert FASTAPI.route(dict(api_scope)) == "/api/orders/{oid}"
    app.router.routes = list(reversed(app.router.routes))  # a new list of the same length
    assert FASTAPI.route(dict(late_scope)) == "/late"
    items = scope_of(app, "http", "/items/1", "GET", None, "")
    assert FASTAPI.route(dict(items)) == "/items/{item_id}"
    where = next(
        i for i, r in enumerate(app.routes) if getattr(r, "path", "") == "/items/{item_id}"
    )
    app.router.routes[where] = app.routes[0]  # replaced in place: same list, same length
    assert FASTAPI.route(dict(items)) == contrib_fastapi_route(dict(items)) is None
    app.router.routes[:] = [r for r in app.routes if getattr(r, "path", "") != "/late"]
    assert FASTAPI.route(dict(late_scope)) == contrib_fastapi_route(dict(late_scope)) is None


def test_the_memo_is_bounded_and_long_keys_are_not_kept() -> None:
    app = starlette_app()
    table = STARLETTE.table(app)
    assert table.memo is not None
    for n in range(route_cache.MEMO_SIZE * 3 + 7):
        scope = scope_of(app, "http", f"/items/{n}", "GET", None, "")
        assert STARLETTE.route(scope) == "/items/{item_id:int}"
        assert 0 < len(table.memo) <= route_cache.MEMO_SIZE
    table.memo.clear()
    long_path = "/items/" + "9" * route_cache.MAX_KEY_CHARS
    assert (
        STARLETTE.route(scope_of(app, "http", long_path, "GET", None, "")) == "/items/{item_id:int}"
    )
    long_host = b"h" * (route_cache.MAX_KEY_CHARS + 1)
    assert STARLETTE.route(scope_of(app, "http", "/nowhere", "GET", long_host, "")) is None
    assert table.memo == {}


@pytest.mark.parametrize("method", [["GET"], ("GET",), 7])
def test_odd_scope_values_are_answered_like_contrib(method: Any) -> None:
    app = starlette_app()
    scope = scope_of(app, "http", "/users/me", "GET", None, "")
    scope["method"] = method
    try:
        expected = contrib_starlette_route(dict(scope))
    except Exception as exc:  # noqa: BLE001 - then ours raises the same
        with pytest.raises(type(exc)):
            STARLETTE.route(dict(scope))
        return
    assert STARLETTE.route(dict(scope)) == expected
    assert STARLETTE.route(dict(scope)) == expected
