"""FastAPI app of the differential suite (uvicorn)."""

from __future__ import annotations

import configure_first  # noqa: F401  (before the framework: see configure_first.py)

# isort: split
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from shared import STREAM_CHUNKS, context_payload

app = FastAPI()


@app.get("/items/{item_id}")
async def item(item_id: str) -> dict[str, str]:
    return {"item": item_id}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("boom from the app")


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in STREAM_CHUNKS:
            yield chunk

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/ctx")
async def ctx() -> dict[str, Any]:
    return context_payload()


@app.get("/excluded/{which}")
async def excluded(which: str) -> dict[str, str]:
    return {"excluded": which}
