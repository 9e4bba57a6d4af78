"""End to end: `opentelemetry-instrument` with capture on, into the project's OTLP receiver."""

from __future__ import annotations

import json
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support.apps import BIN, free_port, get, run, wait_http
from support.otlp import exporter_env, running_receiver

APP = Path(__file__).with_name("e2e_capture_app.py")
SECRETS = [f"SECRET{i}" for i in range(20, 30)]
DOWNLOADS = {"text": b"line of text\n" * 2000, "binary": bytes(range(256)) * 100}
MODES = ["agent", "configure_opentelemetry", "gunicorn"]


def _argv(mode: str, port: int, env: dict[str, str]) -> list[str]:
    if mode == "configure_opentelemetry":
        env["CONFIGURE_IN_CODE"] = "1"
        return [sys.executable, str(APP)]
    agent = str(BIN / "opentelemetry-instrument")
    if mode == "agent":
        return [agent, sys.executable, str(APP)]
    # gthread: /echo calls back into the same server, a single sync worker would deadlock
    server = [str(BIN / "gunicorn"), "-w", "1", "-k", "gthread", "--threads", "4"]
    server += ["-b", f"127.0.0.1:{port}", "--chdir", str(APP.parent), "e2e_capture_app:app"]
    return [agent, *server]


def _run_app(
    tmp: Path, flag: str | None, mode: str = "agent", **extra: str
) -> tuple[list[dict[str, Any]], bytes]:
    with running_receiver() as (receiver, sink):
        port = free_port()
        env = exporter_env(receiver, api_key="e2e-key")
        env.update({"OTEL_SERVICE_NAME": "capture-e2e", "PORT": str(port)})
        env["OTEL_PYTHON_EXCLUDED_URLS"] = "healthz"
        env["OTEL_PYTHON_URLLIB_EXCLUDED_URLS"] = "skipme"
        if flag is not None:
            env["HYPERDX_ENABLE_ADVANCED_NETWORK_CAPTURE"] = flag
        env.update(extra)
        argv = _argv(mode, port, env)
        with run(argv, env, tmp, cwd=APP.parent) as proc:
            wait_http(f"http://127.0.0.1:{port}/healthz", proc)
            assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
            body = json.dumps({"q": "hello", "password": "SECRET20"}).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/echo?token=SECRET28&page=1",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Cookie": "sid=SECRET29"},
            )
            with urllib.request.urlopen(req, timeout=20) as resp:
                assert resp.read() == body
            for kind, expected in DOWNLOADS.items():
                assert get(f"http://127.0.0.1:{port}/download/{kind}")[1] == expected, kind
            # servers /echo, /inner x2, /skipme, /download x2; clients requests + urllib
            sink.wait_for("otel_traces", 8, timeout=20)
            proc.stop(signal.SIGTERM)
        return sink.rows("otel_traces"), proc.stderr.encode()


@pytest.fixture(scope="module", params=MODES)
def captured(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> list[dict[str, Any]]:
    rows, _ = _run_app(tmp_path_factory.mktemp("on"), "1", mode=request.param)
    return rows


def _attrs(rows: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, str]]:
    return [r["SpanAttributes"] for r in rows if r["SpanKind"] == kind and r["SpanName"] == name]


def test_server_span_has_the_network_panel_attributes(captured: list[dict[str, Any]]) -> None:
    [echo] = _attrs(captured, "Server", "POST /echo")
    assert echo["http.url"].startswith("http://127.0.0.1:")
    assert echo["http.url"].endswith("/echo?token=[REDACTED]&page=1")
    assert echo["http.request.header.content-type"] == "application/json"
    assert echo["http.request.header.cookie"] == "[REDACTED]"
    assert json.loads(echo["http.request.body"]) == {"q": "hello", "password": "[REDACTED]"}
    assert echo["http.response.header.x-inner-bytes"].isdigit()
    assert json.loads(echo["http.response.body"])["password"] == "[REDACTED]"


def test_client_spans_of_requests_and_urllib(captured: list[dict[str, Any]]) -> None:
    clients = [r["SpanAttributes"] for r in captured if r["SpanKind"] == "Client"]
    assert len(clients) == 2
    for attrs in clients:
        assert attrs["http.url"].endswith("/inner?api_key=[REDACTED]&view=full")
        assert json.loads(attrs["http.request.body"])["card_number"] == "[REDACTED]"
        got = json.loads(attrs["http.response.body"])
        assert got["refresh_token"] == "[REDACTED]" and got["ok"] is True
        assert attrs["http.response.header.set-cookie"] == "[REDACTED]"
    assert {a.get("http.request.header.authorization") for a in clients} == {"[REDACTED]", None}


def test_file_downloads(captured: list[dict[str, Any]]) -> None:
    spans = _attrs(captured, "Server", "GET /download/<kind>")
    by_type = {a["http.response.header.content-type"].split(";")[0]: a for a in spans}
    text = by_type["text/plain"]
    assert text["http.response.body"] == DOWNLOADS["text"][:4096].decode()
    assert text["http.response.body.truncated"] == "true"  # Map(String, String) column
    assert int(text["http.response.body.size"]) == len(DOWNLOADS["text"])
    binary = by_type["application/octet-stream"]
    assert "http.response.body" not in binary
    assert int(binary["http.response.body.size"]) == len(DOWNLOADS["binary"])


def test_no_secret_reaches_the_receiver(captured: list[dict[str, Any]]) -> None:
    text = json.dumps(captured, default=str)
    assert not [s for s in SECRETS if s in text]


def test_excluded_urls_and_exporter_stay_uncaptured(captured: list[dict[str, Any]]) -> None:
    names = {r["SpanName"] for r in captured}
    assert "GET /healthz" not in names, names
    assert "GET /skipme" in names  # the server side is not excluded ...
    client_urls = [r["SpanAttributes"]["http.url"] for r in captured if r["SpanKind"] == "Client"]
    assert not [u for u in client_urls if "skipme" in u or "healthz" in u]  # ... urllib's is
    urls = [r["SpanAttributes"].get("http.url", "") for r in captured]
    assert not [u for u in urls if "/v1/" in u], urls  # our own OTLP export is never a span


@pytest.mark.parametrize("flag", [None, "0", "false"])
def test_off_by_default_and_with_0_or_false(tmp_path: Path, flag: str | None) -> None:
    rows, _ = _run_app(tmp_path, flag)
    for row in rows:
        keys = [k for k in row["SpanAttributes"] if ".header." in k or ".body" in k]
        assert not keys, (row["SpanName"], keys)


def test_new_semantic_conventions_get_http_url_and_redaction(tmp_path: Path) -> None:
    """With OTEL_SEMCONV_STABILITY_OPT_IN=http only url.full/url.query are set upstream: we add
    http.url (HyperDX's network panel needs it) and redact all of them."""
    rows, _ = _run_app(tmp_path, "1", OTEL_SEMCONV_STABILITY_OPT_IN="http")
    assert not [s for s in SECRETS if s in json.dumps(rows, default=str)]
    [echo] = _attrs(rows, "Server", "POST /echo")
    assert echo["http.url"].endswith("/echo?token=[REDACTED]&page=1")
    assert echo["url.query"] == "token=[REDACTED]&page=1"
    clients = [r["SpanAttributes"] for r in rows if r["SpanKind"] == "Client"]
    assert clients and all(c["http.url"] == c["url.full"] for c in clients)
    assert all(c["url.full"].endswith("api_key=[REDACTED]&view=full") for c in clients)
