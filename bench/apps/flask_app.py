"""Flask hello-world for the request-overhead benchmark (served by Gunicorn, 1 sync worker)."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    return "Hello, World!"
