"""FastAPI app for the real-server tests (uvicorn under opentelemetry-instrument)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

app = FastAPI()


@app.api_route("/items/{item_id}", methods=["GET", "POST"])
async def item(item_id: int, request: Request) -> Any:
    return {"id": item_id, "body": (await request.body()).decode()}


@app.get("/boom")
async def boom() -> Any:
    raise RuntimeError("boom in the view")
