"""A small FastAPI app for the uvicorn examples and tests (same contract as wsgi_app.py).

Each ``GET /work/<n>`` makes one server span, one client span (urllib call to ``PING_URL``),
one log record inside the request and one counter increment.

Run:  opentelemetry-instrument uvicorn asgi_app:app --workers 2     (from this directory)
"""

from __future__ import annotations

import logging
import os
import time
import urllib.request

from fastapi import FastAPI
from opentelemetry import metrics

logging.basicConfig(level=logging.INFO)
log = logging.getLogger("examples.servers")
requests_done = metrics.get_meter("examples.servers").create_counter(
    "app.requests", description="requests handled by this worker"
)
PING_URL = os.environ.get("PING_URL", "")

app = FastAPI()


@app.get("/work/{n}")
def work(n: int) -> dict[str, int]:
    log.info("handled request %d", n)
    requests_done.add(1)
    if PING_URL:
        with urllib.request.urlopen(PING_URL, timeout=5) as resp:
            resp.read()
    return {"n": n, "pid": os.getpid()}


@app.get("/health")
def health(sleep: float = 0.0) -> dict[str, int]:
    """Readiness probe; reports which worker answered (tests wait until every worker has)."""
    time.sleep(sleep)
    return {"pid": os.getpid()}
