"""Real servers under ``opentelemetry-instrument``: gunicorn + Flask and uvicorn + FastAPI,
exporting OTLP to the project's receiver. The default is our server path; with
``HYPERDX_SERVER_INSTRUMENTATION=contrib`` contrib's instrumentations are back (their
per-message ASGI spans are the tell-tale)."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.apps import BIN, free_port, run, wait_http
from support.otlp import exporter_env, running_receiver

APPS = Path(__file__).resolve().parent / "apps"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def receiver() -> Iterator[Any]:
    with running_receiver() as pair:
        yield pair


def argv(server: str, port: int) -> list[str]:
    agent = str(BIN / "opentelemetry-instrument")
    if server == "gunicorn":
        return [agent, str(BIN / "gunicorn"), "-w", "1", "-b", f"127.0.0.1:{port}",
                "server_flask_app:app"]  # fmt: skip
    return [agent, str(BIN / "uvicorn"), "server_fastapi_app:app", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip


def request(port: int, method: str, path: str, body: bytes | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"traceparent": TRACEPARENT})
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["lean", "contrib"])
@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_real_server_spans_and_metrics(
    receiver: Any, tmp_path: Path, server: str, mode: str
) -> None:
    rcv, sink = receiver
    port = free_port()
    env = {
        **exporter_env(rcv),
        "OTEL_SERVICE_NAME": f"server-{server}-{mode}",
        "PYTHONPATH": str(APPS),
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "traceparent",
    }
    if mode == "contrib":
        env["HYPERDX_SERVER_INSTRUMENTATION"] = "contrib"
    with run(argv(server, port), env, tmp_path, cwd=APPS) as proc:
        wait_http(f"http://127.0.0.1:{port}/items/0", proc)
        assert request(port, "POST", "/items/7", b"hello") == 200
        assert request(port, "GET", "/boom") == 500
        route = "/items/<int:item_id>" if server == "gunicorn" else "/items/{item_id}"

        def ours(row: dict[str, Any]) -> bool:
            return row["ServiceName"] == f"server-{server}-{mode}" and row["SpanKind"] == "Server"

        rows = sink.wait_for("otel_traces", 3, timeout=20, where=ours)
        histograms = sink.wait_for(
            "otel_metrics_histogram",
            timeout=20,
            where=lambda r: (
                r["MetricName"] == "http.server.duration"
                and r["ServiceName"] == f"server-{server}-{mode}"
            ),
        )
        proc.stop()
    # exactly one server span per request (FastAPI's own telemetry stands down for ours too)
    posts = [r for r in sink.rows("otel_traces") if ours(r) and r["SpanName"].startswith("POST")]
    assert len(posts) == 1, [(r["SpanName"], r["ScopeName"]) for r in posts]
    post = posts[0]
    assert (
        post["ScopeName"]
        == f"opentelemetry.instrumentation.{'flask' if server == 'gunicorn' else 'fastapi'}"
    )
    assert post["TraceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert post["ParentSpanId"] == "b7ad6b7169203331"
    assert post["SpanAttributes"]["http.route"] == route
    assert post["SpanAttributes"].get("http.status_code") == "200", str(post)
    assert post["SpanAttributes"]["http.request.header.traceparent"].strip("[]\"'") == TRACEPARENT
    boom = next(r for r in rows if r["SpanName"] == "GET /boom")
    assert boom["StatusCode"] == "Error"
    assert boom["Events.Name"] == ["exception"]
    assert "boom in the view" in str(boom["Events.Attributes"])
    # contrib's FastAPI answer: the 500 status set after the exception clears the message
    assert boom["StatusMessage"] == (
        "" if server == "uvicorn" else "RuntimeError: boom in the view"
    )
    assert {h["MetricUnit"] for h in histograms} == {"ms"}
    per_message = [
        r
        for r in sink.rows("otel_traces")
        if r["ServiceName"] == f"server-{server}-{mode}"
        and r["SpanName"].endswith((" http send", " http receive"))
    ]
    if server == "uvicorn":
        # no per-message spans on our path; contrib's are back with the opt-out
        assert (len(per_message) > 0) == (mode == "contrib")
    else:
        assert per_message == []
