"""Lifecycle (B7): idempotent configure, bounded exit against a dead or hanging endpoint,
SIGTERM flush that chains to the app's handler, clear start-up errors."""

from __future__ import annotations

import signal
import socket
import statistics
import sys
import time
from pathlib import Path

from scripts import run_script
from support.apps import BIN, EXAMPLES, free_port, get, run, wait_http
from support.otlp import running_receiver


def test_second_configure_keeps_one_of_everything(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        proc = run_script(
            """
            from opentelemetry import trace
            from hyperdx.opentelemetry import configure_opentelemetry
            a = configure_opentelemetry()
            b = configure_opentelemetry(service_name="ignored-second-time")
            print("same", a is b)
            tp = trace.get_tracer_provider()
            print("span processors", len(tp._active_span_processor._span_processors))
            with trace.get_tracer("t").start_as_current_span("only-once"):
                pass
        """,
            receiver,
            tmp_path,
            agent=False,
        )
        sink.wait_for("otel_traces")
        time.sleep(0.3)
        assert [r["SpanName"] for r in sink.rows("otel_traces")] == ["only-once"]
    assert "same True" in proc.stdout
    assert "span processors 3" in proc.stdout  # baggage copier, hygiene, one batch exporter
    assert "Overriding" not in proc.stderr


def _closed_port() -> int:
    return free_port()  # nothing listens there afterwards: connection refused


def test_dead_endpoint_costs_no_request_latency_and_exit_is_bounded(tmp_path: Path) -> None:
    port = free_port()
    dead = f"http://127.0.0.1:{_closed_port()}"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": dead,
        "OTEL_SERVICE_NAME": "shop",
        "PORT": str(port),
        "HYPERDX_SHUTDOWN_TIMEOUT": "2",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
    }
    argv = [str(BIN / "opentelemetry-instrument"), sys.executable, str(EXAMPLES / "flask_app.py")]
    with run(argv, env, tmp_path) as proc:
        wait_http(f"http://127.0.0.1:{port}/", proc)
        latencies = []
        for _ in range(30):
            status, _, seconds = get(f"http://127.0.0.1:{port}/checkout")
            assert status == 200
            latencies.append(seconds)
        exit_seconds = proc.stop(signal.SIGTERM)
    assert statistics.median(latencies) < 0.1, latencies
    assert max(latencies) < 1.0, latencies
    assert exit_seconds < 2 + 1.5, exit_seconds
    assert "telemetry dropped in this process" in proc.stderr
    assert "traces" in proc.stderr.split("telemetry dropped in this process")[1]


def test_hanging_endpoint_cannot_hold_the_exit(tmp_path: Path) -> None:
    """A collector that accepts connections and never answers."""
    with socket.socket() as hang:
        hang.bind(("127.0.0.1", 0))
        hang.listen(100)
        endpoint = f"http://127.0.0.1:{hang.getsockname()[1]}"
        start = time.monotonic()
        proc = run_script(
            """
            import logging
            from opentelemetry import trace
            from hyperdx.opentelemetry import configure_opentelemetry
            configure_opentelemetry(instrument=False)
            with trace.get_tracer("t").start_as_current_span("never-delivered"):
                logging.getLogger("app").warning("never delivered")
        """,
            receiver=None,
            tmp_path=tmp_path,
            agent=False,
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            HYPERDX_SHUTDOWN_TIMEOUT="1.5",
        )
        elapsed = time.monotonic() - start
    assert proc.returncode == 0
    assert elapsed < 1.5 + 3.0, elapsed  # interpreter start-up + one deadline, no retries
    assert "telemetry dropped in this process" in proc.stderr


def test_sigterm_chains_to_the_apps_own_handler(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        script = tmp_path / "graceful.py"
        script.write_text(
            "import signal, sys, time, logging\n"
            "from opentelemetry import trace\n"
            "def bye(signum, frame):\n"
            "    print('app handler ran', flush=True)\n"
            "    sys.exit(3)\n"
            "signal.signal(signal.SIGTERM, bye)\n"
            "from hyperdx.opentelemetry import configure_opentelemetry\n"
            "configure_opentelemetry()\n"
            "with trace.get_tracer('t').start_as_current_span('before-term'):\n"
            "    logging.getLogger('app').warning('before term')\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n"
        )
        from support.otlp import exporter_env

        env = exporter_env(receiver)
        env.update(
            {
                "OTEL_BSP_SCHEDULE_DELAY": "60000",
                "OTEL_BLRP_SCHEDULE_DELAY": "60000",
                "OTEL_SERVICE_NAME": "graceful",
            }
        )
        with run([sys.executable, str(script)], env, tmp_path) as proc:
            deadline = time.monotonic() + 15
            while "ready" not in proc.stdout and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.stop(signal.SIGTERM)
        assert "app handler ran" in proc.stdout
        assert proc.returncode == 3
        sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "before-term", timeout=2)
        sink.wait_for("otel_logs", where=lambda r: r["Body"] == "before term", timeout=2)


def test_malformed_endpoint_is_one_clear_message_and_the_app_still_runs(tmp_path: Path) -> None:
    proc = run_script(
        """
        print("app ran")
    """,
        receiver=None,
        tmp_path=tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT="localhost:4318",
    )
    assert proc.returncode == 0
    assert "app ran" in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if "OTEL_EXPORTER_OTLP_ENDPOINT" in line]
    assert len(lines) == 1, proc.stderr
    assert "'localhost:4318'" in lines[0] and "telemetry is OFF" in lines[0]


def test_sdk_disabled_exports_nothing(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        proc = run_script(
            """
            import logging
            from opentelemetry import trace
            with trace.get_tracer("t").start_as_current_span("x"):
                logging.getLogger("app").warning("x")
            print("handlers", logging.getLogger().handlers)
        """,
            receiver,
            tmp_path,
            OTEL_SDK_DISABLED="true",
        )
        time.sleep(0.5)
        assert receiver.requests == []
    assert "handlers []" in proc.stdout


def test_queue_overflow_is_counted_and_reported_once(tmp_path: Path) -> None:
    proc = run_script(
        """
        from opentelemetry import trace
        from hyperdx.opentelemetry import configure_opentelemetry
        configure_opentelemetry(instrument=False)
        tracer = trace.get_tracer("t")
        for i in range(3000):
            with tracer.start_as_current_span("burst"):
                pass
    """,
        receiver=None,
        tmp_path=tmp_path,
        agent=False,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
        OTEL_BSP_MAX_QUEUE_SIZE="100",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="50",
        HYPERDX_SHUTDOWN_TIMEOUT="1",
    )
    summary = [
        line for line in proc.stderr.splitlines() if "telemetry dropped in this process" in line
    ]
    assert len(summary) == 1, proc.stderr
    assert "queue full" in summary[0]
    dropped = int(summary[0].split(": ", 2)[-1].split(" traces")[0].split()[-1])
    # every span is accounted for, none silently (a few may race between check and enqueue)
    assert 2995 <= dropped <= 3005, summary[0]
    assert proc.stderr.count("dropping traces: queue full") == 1


def test_memory_stays_bounded_with_the_collector_down(tmp_path: Path) -> None:
    port = free_port()
    # Small queues so the warm-up fills them; the bound is the same mechanism at any size.
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
        "OTEL_SERVICE_NAME": "shop",
        "PORT": str(port),
        "HYPERDX_SHUTDOWN_TIMEOUT": "1",
        "OTEL_BSP_MAX_QUEUE_SIZE": "256",
        "OTEL_BLRP_MAX_QUEUE_SIZE": "256",
    }
    argv = [str(BIN / "opentelemetry-instrument"), sys.executable, str(EXAMPLES / "flask_app.py")]

    def rss_mb(pid: int) -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    with run(argv, env, tmp_path) as proc:
        wait_http(f"http://127.0.0.1:{port}/", proc)
        for _ in range(400):  # warm-up: fill the bounded queues
            get(f"http://127.0.0.1:{port}/checkout")
        before = rss_mb(proc.popen.pid)
        for _ in range(2000):
            get(f"http://127.0.0.1:{port}/checkout")
        after = rss_mb(proc.popen.pid)
        proc.stop(signal.SIGTERM)
    assert after - before < 10, (before, after)
