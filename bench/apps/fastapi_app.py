"""FastAPI hello-world for the request-overhead benchmark (served by uvicorn, 1 worker)."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"message": "Hello, World!"}
