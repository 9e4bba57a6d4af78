"""Logs (S9, B7): one handler, the app's logging untouched, levels as documented."""

from __future__ import annotations

from pathlib import Path

from scripts import run_script
from support.otlp import running_receiver


def _bodies(sink: object) -> list[str]:
    return [r["Body"] for r in sink.rows("otel_logs")]  # type: ignore[attr-defined]


def test_dictconfig_after_start_keeps_export_and_the_apps_console(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        proc = run_script(
            """
            import logging, logging.config
            logging.config.dictConfig({
                "version": 1,
                "formatters": {"f": {"format": "APPFMT %(levelname)s %(message)s"}},
                "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "f"}},
                "root": {"level": "INFO", "handlers": ["console"]},
            })
            logging.getLogger("app").info("info after dictConfig")
            logging.getLogger("app").warning("warning after dictConfig")
        """,
            receiver,
            tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        sink.wait_for("otel_logs", 2)
        assert sorted(_bodies(sink)) == ["info after dictConfig", "warning after dictConfig"]
    assert "APPFMT INFO info after dictConfig" in proc.stderr
    assert "APPFMT WARNING warning after dictConfig" in proc.stderr


def test_basicconfig_after_start_is_not_a_no_op(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        proc = run_script(
            """
            import logging
            logging.basicConfig(level=logging.INFO, format="MINE %(message)s")
            root = logging.getLogger()
            print("root level", root.level, "handlers", [type(h).__name__ for h in root.handlers])
            logging.getLogger("app").info("visible info")
        """,
            receiver,
            tmp_path,
        )
        sink.wait_for("otel_logs", where=lambda r: r["Body"] == "visible info")
    assert "MINE visible info" in proc.stderr
    assert "root level 20 handlers ['StreamHandler', 'HyperDXLoggingHandler']" in proc.stdout


def test_sdk_never_touches_root_level_and_last_resort_still_prints(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        proc = run_script(
            """
            import logging
            root = logging.getLogger()
            print("level", root.level)
            logging.getLogger("app").warning("unconfigured warning")
            logging.getLogger("app").info("unconfigured info")
        """,
            receiver,
            tmp_path,
        )
        sink.wait_for("otel_logs", where=lambda r: r["Body"] == "unconfigured warning")
        assert "unconfigured info" not in _bodies(sink)
    assert "level 30" in proc.stdout  # WARNING, Python's default, untouched
    assert "unconfigured warning" in proc.stderr  # as without the SDK (logging.lastResort)


def test_exactly_one_handler_under_agent_hook_instrumentor_and_repeated_calls(
    tmp_path: Path,
) -> None:
    with running_receiver() as (receiver, sink):
        proc = run_script(
            """
            import logging
            from opentelemetry.instrumentation.logging import LoggingInstrumentor
            from hyperdx.opentelemetry import configure_opentelemetry
            from hyperdx.opentelemetry.logs import is_otlp_handler
            configure_opentelemetry()
            configure_opentelemetry()
            LoggingInstrumentor().uninstrument()
            LoggingInstrumentor().instrument()
            configure_opentelemetry()
            otlp = [h for h in logging.getLogger().handlers if is_otlp_handler(h)]
            print("otlp handlers", len(otlp))
            for i in range(5):
                logging.getLogger("app").warning("record %d", i)
        """,
            receiver,
            tmp_path,
            OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION="true",
        )
        sink.wait_for("otel_logs", 5)
        import time

        time.sleep(0.5)  # a duplicate would arrive in the same or the next batch
        assert sorted(_bodies(sink)) == [f"record {i}" for i in range(5)]
    assert "otlp handlers 1" in proc.stdout, proc.stdout + proc.stderr
    assert "Overriding of current" not in proc.stderr


def test_debug_records_export_once_the_app_lowers_its_logger(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        run_script(
            """
            import logging
            log = logging.getLogger("app")
            log.debug("debug before")
            log.setLevel(logging.DEBUG)
            log.debug("debug after")
        """,
            receiver,
            tmp_path,
        )
        [row] = sink.wait_for("otel_logs", where=lambda r: r["Body"] == "debug after")
        assert row["SeverityText"] == "debug"
        assert "debug before" not in _bodies(sink)


def test_hyperdx_log_level_raises_only_the_handler(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        proc = run_script(
            """
            import logging
            logging.basicConfig(format="CONSOLE %(message)s")
            logging.getLogger("app").warning("warn not exported")
            logging.getLogger("app").error("error exported")
        """,
            receiver,
            tmp_path,
            HYPERDX_LOG_LEVEL="error",
        )
        sink.wait_for("otel_logs", where=lambda r: r["Body"] == "error exported")
        assert _bodies(sink) == ["error exported"]
    assert "CONSOLE warn not exported" in proc.stderr


def test_records_inside_spans_carry_ids_and_exceptions_become_attributes(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        run_script(
            """
            import logging
            from opentelemetry import trace
            with trace.get_tracer("t").start_as_current_span("work") as span:
                try:
                    1 / 0
                except ZeroDivisionError:
                    logging.getLogger("app").exception("division failed")
        """,
            receiver,
            tmp_path,
        )
        [log] = sink.wait_for("otel_logs")
        [span] = sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "work")
        assert (log["TraceId"], log["SpanId"]) == (span["TraceId"], span["SpanId"])
        assert log["LogAttributes"]["exception.type"] == "ZeroDivisionError"
        assert log["LogAttributes"]["exception.message"] == "division by zero"
        assert "Traceback" in log["LogAttributes"]["exception.stacktrace"]


def test_sdk_own_records_are_never_exported(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        run_script(
            """
            import logging
            logging.getLogger("opentelemetry.sdk.trace").warning("sdk internal")
            logging.getLogger("hyperdx.opentelemetry").warning("ours internal")
            logging.getLogger("app").warning("app record")
        """,
            receiver,
            tmp_path,
        )
        sink.wait_for("otel_logs", where=lambda r: r["Body"] == "app record")
        assert _bodies(sink) == ["app record"]
