"""A Flask app for the end-to-end capture test: `opentelemetry-instrument python THIS`, or plain
`python THIS` with CONFIGURE_IN_CODE=1 (configure_opentelemetry() activates instrumentation).

/echo echoes the body and, on the way, calls /inner with requests and urllib (client spans);
/healthz is excluded through OTEL_PYTHON_EXCLUDED_URLS, /skipme for urllib only through
OTEL_PYTHON_URLLIB_EXCLUDED_URLS.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from pathlib import Path

import flask
import requests

if os.environ.get("CONFIGURE_IN_CODE"):  # the other supported way in: no agent
    from hyperdx.opentelemetry import configure_opentelemetry

    configure_opentelemetry()

app = flask.Flask(__name__)
PORT = int(os.environ["PORT"])
SECRET_HEADERS = {"Authorization": "Bearer SECRET21", "X-Api-Key": "SECRET22"}


@app.post("/echo")
def echo() -> flask.Response:
    inner = f"http://127.0.0.1:{PORT}/inner?api_key=SECRET23&view=full"
    payload = {"order": 42, "card_number": "SECRET24"}
    r = requests.post(inner, json=payload, headers=SECRET_HEADERS, timeout=10)
    req = urllib.request.Request(inner, data=json.dumps(payload).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Cookie", "sid=SECRET25")
    with urllib.request.urlopen(req, timeout=10) as resp:
        via_urllib = resp.read()
    assert via_urllib == r.content, (via_urllib, r.content)
    # excluded for clients: globally (OTEL_PYTHON_EXCLUDED_URLS) and per library
    assert requests.get(f"http://127.0.0.1:{PORT}/healthz", timeout=10).text == "ok"
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/skipme", timeout=10) as resp:
        assert resp.read() == b"skipped"
    out = flask.Response(flask.request.get_data(), content_type=flask.request.content_type)
    out.headers["X-Inner-Bytes"] = str(len(via_urllib))
    return out


@app.post("/inner")
def inner() -> flask.Response:
    resp = flask.jsonify({"ok": True, "refresh_token": "SECRET26", "got": flask.request.json})
    resp.set_cookie("session", "SECRET27")
    return resp


DOWNLOADS = {
    "text": (b"line of text\n" * 2000, "text/plain"),
    "binary": (bytes(range(256)) * 100, "application/octet-stream"),
}


@app.get("/download/<kind>")
def download(kind: str) -> flask.Response:
    """A real file through send_file (wsgi.file_wrapper: sendfile under Gunicorn)."""
    data, mimetype = DOWNLOADS[kind]
    path = Path(tempfile.gettempdir()) / f"hdx-capture-{os.getpid()}-{kind}"
    if not path.exists():
        path.write_bytes(data)
    return flask.send_file(path, mimetype=mimetype)


@app.get("/skipme")
def skipme() -> str:
    return "skipped"


@app.get("/healthz")
def healthz() -> str:
    return "ok"


if __name__ == "__main__":
    app.run("127.0.0.1", PORT, threaded=True)
