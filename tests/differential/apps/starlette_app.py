"""Starlette app of the differential suite (uvicorn)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from shared import STREAM_CHUNKS, context_payload
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


async def item(request: Request) -> Response:
    return JSONResponse({"item": request.path_params["item_id"]})


async def boom(request: Request) -> Response:
    raise RuntimeError("boom from the app")


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in STREAM_CHUNKS:
            yield chunk

    return StreamingResponse(chunks(), media_type="text/plain")


async def ctx(request: Request) -> Response:
    return JSONResponse(context_payload())


async def excluded(request: Request) -> Response:
    return JSONResponse({"excluded": request.path_params["which"]})


app = Starlette(
    routes=[
        Route("/items/{item_id}", item, methods=["GET"]),
        Route("/boom", boom, methods=["GET"]),
        Route("/stream", stream, methods=["GET"]),
        Route("/ctx", ctx, methods=["GET"]),
        Route("/excluded/{which}", excluded, methods=["GET"]),
    ]
)
