"""`opentelemetry-instrument python examples/flask_app.py` end to end into a real receiver."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from support.apps import BIN, EXAMPLES, free_port, get, run, wait_http
from support.otlp import exporter_env, running_receiver

KEY = "test-ingestion-key"


def _app_env(receiver: object, port: int, **extra: str) -> dict[str, str]:
    env = exporter_env(receiver, api_key=KEY)  # type: ignore[arg-type]
    env.update({"OTEL_SERVICE_NAME": "shop", "OTEL_SERVICE_VERSION": "1.2.3", "PORT": str(port)})
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One agent-run shop app: three checkouts and one failure, then a SIGTERM stop."""
    tmp = tmp_path_factory.mktemp("shop")
    with running_receiver(api_keys=[KEY]) as (receiver, sink):
        port = free_port()
        argv = [
            str(BIN / "opentelemetry-instrument"),
            sys.executable,
            str(EXAMPLES / "flask_app.py"),
        ]
        with run(argv, _app_env(receiver, port), tmp) as proc:
            wait_http(f"http://127.0.0.1:{port}/", proc)
            statuses = [get(f"http://127.0.0.1:{port}/checkout")[0] for _ in range(3)]
            statuses.append(get(f"http://127.0.0.1:{port}/fail")[0])
            sink.wait_for("otel_traces", 7, where=lambda r: r["SpanKind"] == "Server")
            sink.wait_for("otel_metrics_sum", where=lambda r: r["MetricName"] == "app.checkouts")
            proc.stop(signal.SIGTERM)
        yield {"sink": sink, "receiver": receiver, "proc": proc, "statuses": statuses}


def test_requests_were_served(shop: dict) -> None:  # type: ignore[type-arg]
    assert shop["statuses"] == [200, 200, 200, 500]


def test_server_and_client_spans_with_one_trace_per_checkout(shop: dict) -> None:  # type: ignore[type-arg]
    rows = shop["sink"].rows("otel_traces")
    servers = [r for r in rows if r["SpanKind"] == "Server"]
    checkout = [r for r in servers if r["SpanName"] == "GET /checkout"]
    inventory = [r for r in servers if r["SpanName"] == "GET /inventory"]
    clients = [r for r in rows if r["SpanKind"] == "Client"]
    assert len(checkout) == 3 and len(inventory) == 3 and len(clients) == 3
    for root in checkout:
        assert root["ParentSpanId"] == ""
        assert root["ServiceName"] == "shop"
        client = next(c for c in clients if c["TraceId"] == root["TraceId"])
        assert client["ParentSpanId"] == root["SpanId"]
        child = next(s for s in inventory if s["TraceId"] == root["TraceId"])
        assert child["ParentSpanId"] == client["SpanId"]


def test_failing_request_is_an_error_span_with_the_exception(shop: dict) -> None:  # type: ignore[type-arg]
    [fail] = [r for r in shop["sink"].rows("otel_traces") if r["SpanName"] == "GET /fail"]
    assert fail["StatusCode"] == "Error"
    assert "exception" in fail["Events.Name"]
    attrs = fail["Events.Attributes"][fail["Events.Name"].index("exception")]
    assert attrs["exception.type"] == "RuntimeError"
    assert "payment provider unreachable" in attrs["exception.message"]


def test_logs_at_default_levels_exactly_once_with_trace_ids(shop: dict) -> None:  # type: ignore[type-arg]
    logs = shop["sink"].rows("otel_logs")
    bodies = [r["Body"] for r in logs]
    warnings = [r for r in logs if r["Body"] == "low stock for sku-42: 3 left"]
    assert len(warnings) == 3, bodies  # once per request, no duplicates
    assert "checkout started" not in bodies  # INFO: below the root logger's default WARNING
    traces = {
        r["TraceId"]: r
        for r in shop["sink"].rows("otel_traces")
        if r["SpanName"] == "GET /checkout"
    }
    for w in warnings:
        assert w["SeverityText"] == "warn" and w["SeverityNumber"] == 13
        assert w["TraceId"] in traces and len(w["SpanId"]) == 16
    [err] = [r for r in logs if r["Body"] == "payment provider unreachable"]
    assert err["SeverityText"] == "error" and err["TraceId"]
    flask_error = [r for r in logs if r["Body"].startswith("Exception on /fail")]
    assert len(flask_error) == 1
    assert flask_error[0]["LogAttributes"]["exception.type"] == "RuntimeError"
    assert "Traceback" in flask_error[0]["LogAttributes"]["exception.stacktrace"]


def test_custom_metric_arrives_with_delta_temporality(shop: dict) -> None:  # type: ignore[type-arg]
    rows = [r for r in shop["sink"].rows("otel_metrics_sum") if r["MetricName"] == "app.checkouts"]
    assert sum(float(r["Value"]) for r in rows) == 3
    assert all(r["Attributes"] == {"payment.method": "card"} for r in rows)
    assert {r["AggregationTemporality"] for r in rows} == {1}  # delta


def test_every_request_carried_the_bare_authorization_key(shop: dict) -> None:  # type: ignore[type-arg]
    requests = shop["receiver"].requests
    assert {r.signal for r in requests} >= {"traces", "logs", "metrics"}
    assert all(r.headers.get("authorization") == KEY for r in requests)
    assert all(r.status == 200 for r in requests)


def test_one_resource_on_all_three_signals(shop: dict) -> None:  # type: ignore[type-arg]
    sink = shop["sink"]
    resources = [
        r["ResourceAttributes"]
        for table in ("otel_traces", "otel_logs", "otel_metrics_sum")
        for r in sink.rows(table)
    ]
    assert resources
    instance_ids = {r["service.instance.id"] for r in resources}
    assert len(instance_ids) == 1
    first = resources[0]
    for key in (
        "service.name",
        "service.version",
        "hyperdx.distro.version",
        "host.name",
        "process.pid",
        "process.runtime.version",
        "telemetry.sdk.version",
    ):
        assert {r.get(key) for r in resources} == {first[key]}, key
    assert first["service.name"] == "shop" and first["service.version"] == "1.2.3"


def test_sigterm_stops_the_app_the_default_way(shop: dict) -> None:  # type: ignore[type-arg]
    proc = shop["proc"]
    assert proc.returncode == -signal.SIGTERM
    assert proc.exit_seconds < 5


def test_sigterm_flushes_the_last_requests_telemetry(tmp_path: Path) -> None:
    """Batches would wait 60 s; only the SIGTERM flush can deliver them."""
    with running_receiver(api_keys=[KEY]) as (receiver, sink):
        port = free_port()
        env = _app_env(
            receiver,
            port,
            OTEL_BSP_SCHEDULE_DELAY="60000",
            OTEL_BLRP_SCHEDULE_DELAY="60000",
            OTEL_METRIC_EXPORT_INTERVAL="60000",
        )
        argv = [
            str(BIN / "opentelemetry-instrument"),
            sys.executable,
            str(EXAMPLES / "flask_app.py"),
        ]
        with run(argv, env, tmp_path) as proc:
            wait_http(f"http://127.0.0.1:{port}/", proc)
            assert get(f"http://127.0.0.1:{port}/checkout")[0] == 200
            seconds = proc.stop(signal.SIGTERM)
        assert seconds < 5
        sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "GET /checkout", timeout=2)
        sink.wait_for("otel_logs", where=lambda r: r["Body"].startswith("low stock"), timeout=2)
        sink.wait_for(
            "otel_metrics_sum", where=lambda r: r["MetricName"] == "app.checkouts", timeout=2
        )
