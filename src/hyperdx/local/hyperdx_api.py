"""The part of HyperDX's API that the `hdx` CLI (``@hyperdx/cli``) uses, over our tables.

Login is ``POST /api/login/password`` with any email and the local key as the password; it
sets a session cookie signed with the key (so a restart with the same key keeps `hdx` logged
in, and a new key logs everyone out). ``/api/clickhouse-proxy`` runs on the same read-only
engine as the ClickHouse HTTP interface. Anything else answers as HyperDX's API would: 401
``Unauthorized`` without a valid session, Express's 404 for an unknown path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import TYPE_CHECKING, Any

from hyperdx.local import sources
from hyperdx.local.clickhouse_http import QueryEngine
from hyperdx.local.peers import is_loopback
from hyperdx.local.request_body import read_capped

if TYPE_CHECKING:
    from aiohttp import web

SESSION_COOKIE = "connect.sid"
_SESSION_DAYS = 30
_MAX_LOGIN_BODY = 64 << 10


def _sign(key: str, nonce: str) -> str:
    mac = hmac.new(key.encode(), b"hyperdx-local-session:" + nonce.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def new_session(key: str, email: str) -> str:
    """A cookie value naming ``email``, valid as long as the key is the same."""
    who = base64.urlsafe_b64encode(email.encode()).decode().rstrip("=")
    nonce = f"{secrets.token_urlsafe(18)}.{who}"
    return f"{nonce}.{_sign(key, nonce)}"


def session_email(key: str, cookie: str | None) -> str | None:
    """The email of a valid session cookie, else None."""
    if not cookie or cookie.count(".") != 2:
        return None
    nonce, _, mac = cookie.rpartition(".")
    if not hmac.compare_digest(mac.encode(), _sign(key, nonce).encode()):
        return None
    who = nonce.partition(".")[2]
    try:
        return base64.urlsafe_b64decode(who + "=" * (-len(who) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def make_app(
    engine: QueryEngine, key: str, *, clickhouse_url: str, network: bool
) -> web.Application:
    """The API app; ``clickhouse_url`` is what ``/api/connections`` reports as host."""
    from aiohttp import web

    def unauthorized() -> web.Response:
        return web.Response(status=401, text="Unauthorized")

    def email_of(request: web.Request) -> str | None:
        return session_email(key, request.cookies.get(SESSION_COOKIE))

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if not network and not is_loopback(request.remote or ""):
            return web.json_response(
                {
                    "message": f"hyperdx local answers loopback clients only, not "
                    f"{request.remote} (start it with --host to open it)"
                },
                status=403,
            )
        if request.path != "/api/login/password" and email_of(request) is None:
            return unauthorized()
        response: web.StreamResponse = await handler(request)
        return response

    async def login(request: web.Request) -> web.Response:
        raw = await read_capped(request.content, _MAX_LOGIN_BODY)
        try:
            doc = json.loads(raw) if len(raw) <= _MAX_LOGIN_BODY else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return web.json_response(
                {"message": 'body must be JSON {"email": "...", "password": "..."}'},
                status=400,
            )
        email, password = doc.get("email"), doc.get("password")
        if not isinstance(email, str) or not email.strip() or not isinstance(password, str):
            return unauthorized()
        if not hmac.compare_digest(password.encode(), key.encode()):
            return unauthorized()
        response = web.json_response({"status": "success"})
        response.set_cookie(
            SESSION_COOKIE,
            new_session(key, email.strip()),
            httponly=True,
            samesite="Lax",
            path="/",
            max_age=_SESSION_DAYS * 86400,
        )
        return response

    async def me(request: web.Request) -> web.Response:
        email = email_of(request) or ""
        return web.json_response(
            {
                "id": sources.USER_ID,
                "email": email,
                "name": email,
                "team": {"id": sources.TEAM_ID, "name": "hyperdx local"},
            }
        )

    async def list_sources(request: web.Request) -> web.Response:
        return web.json_response(sources.sources())

    async def connections(request: web.Request) -> web.Response:
        return web.json_response(sources.connections(clickhouse_url))

    async def empty_list(request: web.Request) -> web.Response:
        return web.json_response([])

    async def alerts(request: web.Request) -> web.Response:
        return web.json_response({"data": []})

    async def proxy_ping(request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def not_found(request: web.Request) -> web.Response:
        # Express's default 404 page, which HyperDX's API serves for unknown routes.
        text = (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>Error</title>\n</head>\n<body>\n<pre>Cannot {request.method} "
            f"{request.path}</pre>\n</body>\n</html>\n"
        )
        return web.Response(status=404, text=text, content_type="text/html")

    app = web.Application(middlewares=[guard], client_max_size=engine.max_query_bytes + 1)
    app.router.add_post("/api/login/password", login)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/sources", list_sources)
    app.router.add_get("/api/connections", connections)
    app.router.add_get("/api/saved-searches", empty_list)
    app.router.add_get("/api/dashboards", empty_list)
    app.router.add_get("/api/alerts", alerts)
    app.router.add_get("/api/clickhouse-proxy/ping", proxy_ping)
    for path in ("/api/clickhouse-proxy", "/api/clickhouse-proxy/"):
        app.router.add_route("GET", path, engine.handle)
        app.router.add_route("POST", path, engine.handle)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
