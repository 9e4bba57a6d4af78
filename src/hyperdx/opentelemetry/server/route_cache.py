"""The route contrib's span name needs, memoised per app: the same answer without asking every
route's ``matches`` on every request (about 5 us a route on FastAPI).

The answer depends only on the route list and on what the routes' ``matches`` read from the
scope. For Starlette's and FastAPI's own route classes that is the scope type, path, root path
and method, and for ``Host`` routes the first ``host`` header, so those form the memo key. A
route list holding any route whose ``matches`` is not one of those known ones (a custom
``matches`` may read anything) is looked up in full every time, as is a FastAPI request that
already carries a selected route context (``APIRoute.matches`` reads it).

The memo belongs to one version of the route list: it is replaced when any route in the app's
list (compared by identity, else equality) or, with included FastAPI routers, FastAPI's own
routes version changes. It is bounded:
when full it is emptied, so a scanner's random paths cost a full lookup each, as without the
memo, and never memory; long paths and hosts are not memoised at all.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

MEMO_SIZE = 512
MAX_KEY_CHARS = 512

# What a known ``matches`` reads beyond type, path, root path and method.
PURE = 0
READS_HOST = 1  # starlette's Host: the first ``host`` header
READS_FASTAPI_SCOPE = 2  # FastAPI's APIRoute: the route context a router selected, if any

Matcher = Callable[[dict[str, Any]], Any]
Key = tuple[Any, ...]


class RouteTable:
    """One version of an app's route list: the routes to match in order, and the memo."""

    __slots__ = ("source", "version", "routes", "memo", "details", "reads_host", "reads_fastapi")

    def __init__(self, source: list[Any], version: Any, routes: list[tuple[Matcher, Any]]) -> None:
        self.source = source  # a copy of the app's route list, compared with it per request
        self.version = version  # FastAPI's routes version with included routers, else None
        self.routes = routes  # (the bound ``matches`` to call, the route) in match order
        reads = [reads_of(matcher) for matcher, _ in routes]
        memoisable = None not in reads
        self.memo: dict[Key, str | None] | None = {} if memoisable else None
        # key -> (span name, extra span attributes) as the framework computes them from the
        # memoised route and the method (part of the key): shared, so never changed
        self.details: dict[Key, tuple[str, dict[str, Any]]] = {}
        self.reads_host = READS_HOST in reads
        self.reads_fastapi = READS_FASTAPI_SCOPE in reads

    def key(self, scope: dict[str, Any]) -> Key | None:
        """What the routes' answer depends on, or None when this request is not memoised."""
        path = scope.get("path")
        if type(path) is not str or len(path) > MAX_KEY_CHARS:
            return None
        if self.reads_fastapi:
            fastapi_scope = scope.get("fastapi")
            if fastapi_scope and fastapi_scope.get("effective_route_context") is not None:
                return None
        host = None
        if self.reads_host:
            host = first_host(scope.get("headers"))
            if host is not None and (type(host) is not bytes or len(host) > MAX_KEY_CHARS):
                return None
        return (path, scope.get("method"), scope.get("type"), scope.get("root_path", ""), host)

    def remember(self, key: Key, route: str | None) -> None:
        memo = self.memo
        if memo is not None:
            if len(memo) >= MEMO_SIZE:
                memo.clear()
                self.details.clear()
            memo[key] = route

    def remember_details(self, key: Key, details: tuple[str, dict[str, Any]]) -> None:
        if self.memo is not None:
            if len(self.details) >= MEMO_SIZE:
                self.details.clear()
            self.details[key] = details


def first_host(headers: Any) -> Any:
    """The raw value starlette's ``Host.matches`` reads (the first ``host`` header)."""
    if headers is None:
        return None
    for item in headers:
        if item[0] == b"host":
            return item[1]
    return None


def bound(func: Callable[..., Any], route: Any) -> Matcher:
    """``func`` bound to ``route`` (contrib calls starlette's ``Route.matches`` this way)."""
    return types.MethodType(func, route)


def reads_of(matcher: Any, depth: int = 0) -> int | None:
    """What ``matcher`` reads beyond type, path, root path and method (see the constants), or
    None when it is not a ``matches`` known to read only those."""
    func = getattr(matcher, "__func__", None)
    owner = getattr(matcher, "__self__", None)
    if func is None or owner is None or depth > 4:
        return None
    known = _known()
    if func is known.get("effective_context"):
        return _effective_context_reads(owner, known, depth)
    reads = known["funcs"].get(func)
    if reads is None:
        return None
    if func in known["calls_super"]:
        # APIRoute / APIWebSocketRoute call super().matches: every matches on the way is known
        for cls in type(owner).__mro__:
            defined = cls.__dict__.get("matches")
            if defined is None:
                continue
            if defined not in known["funcs"]:
                return None
            if defined not in known["calls_super"]:
                break
    return reads


def _effective_context_reads(context: Any, known: dict[str, Any], depth: int) -> int | None:
    """FastAPI's included-route context matches an APIRoute by its own prefixed path (pure)
    and anything else by delegating to the starlette route it wraps."""
    original = getattr(context, "original_route", None)
    api_route = known.get("api_route")
    if api_route is not None and isinstance(original, api_route):
        return PURE
    frontend = known.get("frontend")
    if frontend is not None and isinstance(original, frontend):
        return None
    inner = getattr(context, "starlette_route", None)
    if inner is None:
        return None
    return reads_of(getattr(inner, "matches", None), depth + 1)


@functools.cache
def _known() -> dict[str, Any]:
    """The ``matches`` functions whose inputs are known (imported once)."""
    from starlette import routing

    funcs: dict[Any, int] = {
        routing.Route.matches: PURE,
        routing.WebSocketRoute.matches: PURE,
        routing.Mount.matches: PURE,
        routing.Host.matches: READS_HOST,
    }
    known: dict[str, Any] = {"funcs": funcs, "calls_super": set()}
    try:
        from fastapi import routing as fastapi_routing
    except ImportError:
        return known
    api_route = getattr(fastapi_routing, "APIRoute", None)
    if api_route is not None and "matches" in api_route.__dict__:
        funcs[api_route.matches] = READS_FASTAPI_SCOPE
        known["calls_super"].add(api_route.matches)
    known["api_route"] = api_route
    websocket = getattr(fastapi_routing, "APIWebSocketRoute", None)
    if websocket is not None and "matches" in websocket.__dict__:
        funcs[websocket.matches] = PURE
        known["calls_super"].add(websocket.matches)
    context = getattr(fastapi_routing, "_EffectiveRouteContext", None)
    if context is not None and "matches" in context.__dict__:
        known["effective_context"] = context.matches
    known["frontend"] = getattr(fastapi_routing, "_FrontendRouteGroup", None)
    return known
