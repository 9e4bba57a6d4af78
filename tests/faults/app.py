"""The Flask app the fault tests load: one server span and one log record per request.

Run under the agent: ``opentelemetry-instrument python tests/faults/app.py`` (PORT).
Each log body is unique ("req <pid>-<n>") so the collector can count duplicates.
"""

from __future__ import annotations

import itertools
import logging
import os

from flask import Flask

app = Flask(__name__)
log = logging.getLogger("faults.app")
log.setLevel(logging.INFO)
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log: one record per request
_seq = itertools.count()
_pid = os.getpid()


@app.get("/")
def index() -> str:
    n = next(_seq)
    log.info("req %d-%d", _pid, n)
    return f"ok {n}\n"


if __name__ == "__main__":
    from werkzeug.serving import WSGIRequestHandler

    WSGIRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive, as a real client uses
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True)
