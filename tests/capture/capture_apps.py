"""The same small app in each server framework: echo, fixed payloads, streaming, form parsing."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from capture_harness import STREAM_CHUNKS, payload

ECHO_HEADERS = [
    ("X-Multi", "a"),
    ("X-Multi", "b"),
    ("X-Comma", "x, y"),
]


def flask_app() -> Any:
    import flask

    app = flask.Flask("capture-test")

    @app.post("/echo")
    def echo() -> Any:
        body = flask.request.get_data()
        resp = flask.Response(body, content_type=flask.request.content_type)
        for k, v in ECHO_HEADERS:
            resp.headers.add(k, v)
        resp.set_cookie("session", "SECRET17")
        resp.set_cookie("other", "SECRET18")
        return resp

    @app.post("/form")
    def form() -> Any:
        return flask.jsonify(dict(flask.request.form))

    @app.get("/payload/<name>")
    def get_payload(name: str) -> Any:
        body, ctype = payload(name)
        if name == "stream":
            return flask.Response(iter(STREAM_CHUNKS), content_type=ctype)
        return flask.Response(body, content_type=ctype)

    return app


def django_urls() -> list[Any]:
    from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
    from django.urls import path

    def echo(request: Any) -> Any:
        resp = HttpResponse(request.body, content_type=request.META.get("CONTENT_TYPE"))
        resp.headers["X-Multi"] = "a, b"
        resp.headers["X-Comma"] = "x, y"
        resp.set_cookie("session", "SECRET17")
        resp.set_cookie("other", "SECRET18")
        return resp

    def form(request: Any) -> Any:
        return JsonResponse(dict(request.POST.items()))

    def get_payload(request: Any, name: str) -> Any:
        body, ctype = payload(name)
        if name == "stream":
            return StreamingHttpResponse(iter(STREAM_CHUNKS), content_type=ctype)
        return HttpResponse(body, content_type=ctype)

    from django.views.decorators.csrf import csrf_exempt

    return [
        path("echo", csrf_exempt(echo)),
        path("form", csrf_exempt(form)),
        path("payload/<str:name>", get_payload),
    ]


urlpatterns: list[Any] = []


def django_app() -> Any:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test-only",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF="capture_apps",
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
    urlpatterns[:] = django_urls()
    from django.core.handlers.wsgi import WSGIHandler

    return WSGIHandler()


def django_asgi_app() -> Any:
    django_app()  # settings and URLs
    from django.core.handlers.asgi import ASGIHandler

    return ASGIHandler()


def _starlette_routes() -> list[Any]:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def echo(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
        resp = Response(body, media_type=request.headers.get("content-type"))
        resp.raw_headers.extend((k.lower().encode(), v.encode()) for k, v in ECHO_HEADERS)
        resp.set_cookie("session", "SECRET17")
        resp.set_cookie("other", "SECRET18")
        return resp

    async def form(request: Request) -> Response:
        return JSONResponse(dict(parse_qsl((await request.body()).decode())))

    async def get_payload(request: Request) -> Response:
        name = request.path_params["name"]
        body, ctype = payload(name)
        if name == "stream":

            async def gen() -> Any:
                for chunk in STREAM_CHUNKS:
                    yield chunk

            return StreamingResponse(gen(), media_type=ctype)
        return Response(body, headers={"content-type": ctype})

    return [
        Route("/echo", echo, methods=["POST"]),
        Route("/form", form, methods=["POST"]),
        Route("/payload/{name}", get_payload),
    ]


def starlette_app() -> Any:
    from starlette.applications import Starlette

    return Starlette(routes=_starlette_routes())


def fastapi_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    for route in _starlette_routes():
        app.router.routes.append(route)
    return app


def aiohttp_app() -> Any:
    from aiohttp import web

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        resp = web.Response(body=body, headers={"Content-Type": request.headers["Content-Type"]})
        for k, v in ECHO_HEADERS:
            resp.headers.add(k, v)
        resp.set_cookie("session", "SECRET17")
        resp.set_cookie("other", "SECRET18")
        return resp

    async def form(request: web.Request) -> web.StreamResponse:
        return web.json_response(dict((await request.post()).items()))

    async def get_payload(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body, ctype = payload(name)
        if name == "stream":
            resp = web.StreamResponse(headers={"Content-Type": ctype})
            await resp.prepare(request)
            for chunk in STREAM_CHUNKS:
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        return web.Response(body=body, headers={"Content-Type": ctype})

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/form", form)
    app.router.add_get("/payload/{name}", get_payload)
    return app
