"""A small Flask app used by the server examples and the pre-fork tests.

Each ``GET /work/<n>`` produces exactly one server span, one client span (an outgoing call to
``PING_URL`` through urllib), one log record inside the request and one counter increment, so
a test can check that every worker exported every request exactly once.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.request

from flask import Flask, request
from opentelemetry import metrics

logging.basicConfig(level=logging.INFO)
log = logging.getLogger("examples.servers")
requests_done = metrics.get_meter("examples.servers").create_counter(
    "app.requests", description="requests handled by this worker"
)
PING_URL = os.environ.get("PING_URL", "")

app = Flask(__name__)


@app.get("/work/<int:n>")
def work(n: int) -> dict[str, int]:
    log.info("handled request %d", n)
    requests_done.add(1)
    if PING_URL:
        with urllib.request.urlopen(PING_URL, timeout=5) as resp:
            resp.read()
    return {"n": n, "pid": os.getpid()}


@app.get("/health")
def health() -> dict[str, int]:
    """Readiness probe; reports which worker answered (tests wait until every worker has)."""
    time.sleep(float(request.args.get("sleep", "0")))
    return {"pid": os.getpid()}


application = app  # the name uWSGI looks for
