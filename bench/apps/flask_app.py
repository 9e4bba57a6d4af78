"""Flask hello-world for the request-overhead benchmark (served by Gunicorn, 1 sync worker)."""

import sys

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    return "Hello, World!"


@app.route("/modules")
def modules() -> str:
    """How many modules this worker has imported (the RSS benchmark reads it)."""
    return str(len(sys.modules))
