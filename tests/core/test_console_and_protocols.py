"""DEBUG console view (S10, B4), configuration in code, gRPC, and the self-diagnostics."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from scripts import KEY, run_script
from support.apps import BIN, free_port, get, run, wait_http
from support.otlp import exporter_env, running_receiver

PROGRAM = """
    import logging
    from opentelemetry import trace, metrics
    tracer = trace.get_tracer("t")
    with tracer.start_as_current_span("parent"):
        with tracer.start_as_current_span("child"):
            logging.getLogger("app").warning("inside child")
    metrics.get_meter("m").create_counter("jobs.done").add(2)
"""


def test_debug_true_prints_a_readable_tree_and_log_lines_without_secrets(tmp_path: Path) -> None:
    with running_receiver(api_keys=[KEY]) as (receiver, sink):
        proc = run_script(PROGRAM, receiver, tmp_path, DEBUG="true")
        sink.wait_for("otel_traces", 2)
    err = proc.stderr
    lines = err.splitlines()
    tree = [i for i, line in enumerate(lines) if line.startswith("trace ")]
    assert tree, err
    start = tree[0]
    assert "(scripted)" in lines[start]
    assert lines[start + 1].startswith("  parent [internal]")
    assert lines[start + 2].startswith("    child [internal]")
    assert any("WARN" in line and "inside child" in line and "trace=" in line for line in lines)
    assert any(line.startswith("metric jobs.done: total=2") for line in lines)
    assert KEY not in err and KEY not in proc.stdout
    assert "authorization" not in err.lower()


def test_debug_false_means_off(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        proc = run_script(PROGRAM, receiver, tmp_path, DEBUG="false")
        sink.wait_for("otel_traces", 2)
    assert "parent [internal]" not in proc.stderr
    assert "debug" not in proc.stderr.lower()


def test_configured_in_code_without_the_agent_instruments_and_exports(tmp_path: Path) -> None:
    """What a post-fork hook does: configure_opentelemetry() alone gives complete telemetry."""
    with running_receiver(api_keys=["code-key"]) as (receiver, sink):
        port = free_port()
        app = tmp_path / "coded.py"
        app.write_text(
            "from hyperdx.opentelemetry import configure_opentelemetry\n"
            "configure_opentelemetry(service_name='coded', apikey='code-key')\n"
            "import runpy, sys\n"
            f"sys.argv = ['flask_app.py']\n"
            f"runpy.run_path({str(Path(__file__).parents[2] / 'examples' / 'flask_app.py')!r},"
            " run_name='__main__')\n"
        )
        env = exporter_env(receiver)
        env["PORT"] = str(port)
        with run([sys.executable, str(app)], env, tmp_path) as proc:
            wait_http(f"http://127.0.0.1:{port}/", proc)
            assert get(f"http://127.0.0.1:{port}/checkout")[0] == 200
            sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "GET /checkout")
            sink.wait_for("otel_traces", where=lambda r: r["SpanKind"] == "Client")
            [log] = sink.wait_for("otel_logs", where=lambda r: r["Body"].startswith("low stock"))
            proc.stop(signal.SIGTERM)
        services = {r["ServiceName"] for t in ("otel_traces", "otel_logs") for r in sink.rows(t)}
        assert services == {"coded"}  # 0.4.0 gave logs unknown_service:python
        assert log["TraceId"]
        assert {r.headers.get("authorization") for r in receiver.requests} == {"code-key"}


def test_grpc_protocol_exports_all_three_signals_with_the_key(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    with running_receiver(api_keys=[KEY], grpc=True) as (receiver, sink):
        env = exporter_env(receiver, api_key=KEY, protocol="grpc")
        script = tmp_path / "p.py"
        script.write_text(PROGRAM.replace("\n    ", "\n"))
        env["OTEL_SERVICE_NAME"] = "grpc-app"
        argv = [str(BIN / "opentelemetry-instrument"), sys.executable, str(script)]
        with run(argv, env, tmp_path) as proc:
            proc.wait(30)
        sink.wait_for("otel_traces", 2)
        sink.wait_for("otel_logs")
        sink.wait_for("otel_metrics_sum")
        grpc_requests = [r for r in receiver.requests if r.protocol == "grpc"]
        assert {r.signal for r in grpc_requests} == {"traces", "logs", "metrics"}
        assert all(r.headers.get("authorization") == KEY for r in grpc_requests)


def test_sdk_warnings_reach_stderr_once_even_with_no_logging_configured(tmp_path: Path) -> None:
    proc = run_script(
        """
        import logging
        for _ in range(50):
            logging.getLogger("opentelemetry.sdk.test").warning("repeated sdk warning")
    """,
        receiver=None,
        tmp_path=tmp_path,
        agent=False,
        PYTHONPATH="",
    )
    # without configure: plain Python behaviour (lastResort) -- every line printed
    assert proc.stderr.count("repeated sdk warning") == 50
    proc = run_script(
        """
        import logging
        from hyperdx.opentelemetry import configure_opentelemetry
        configure_opentelemetry(instrument=False, endpoint="http://127.0.0.1:9")
        for _ in range(50):
            logging.getLogger("opentelemetry.sdk.test").warning("repeated sdk warning")
    """,
        receiver=None,
        tmp_path=tmp_path,
        agent=False,
        HYPERDX_SHUTDOWN_TIMEOUT="0.5",
    )
    assert proc.stderr.count("repeated sdk warning") == 1
    assert "hyperdx-opentelemetry WARNING: repeated sdk warning" in proc.stderr


def test_no_api_key_warns_visibly_and_sends_no_header(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        env = exporter_env(receiver)  # no key
        env["OTEL_SERVICE_NAME"] = "keyless"
        script = tmp_path / "p.py"
        script.write_text(PROGRAM.replace("\n    ", "\n"))
        argv = [str(BIN / "opentelemetry-instrument"), sys.executable, str(script)]
        with run(argv, env, tmp_path) as proc:
            proc.wait(30)
        sink.wait_for("otel_traces", 2)
        time.sleep(0.2)
        assert receiver.requests
        assert all("authorization" not in r.headers for r in receiver.requests)
    assert "no API key: set HYPERDX_API_KEY" in proc.stderr
