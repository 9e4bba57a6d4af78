"""B8: loguru and structlog records arrive once, with the current span's ids."""

from __future__ import annotations

from pathlib import Path

from scripts import run_script
from support.otlp import running_receiver


def test_loguru_records_are_exported_with_trace_ids_and_its_console_is_untouched(
    tmp_path: Path,
) -> None:
    with running_receiver() as (receiver, sink):
        proc = run_script(
            """
            from loguru import logger
            from opentelemetry import trace
            with trace.get_tracer("t").start_as_current_span("job"):
                logger.bind(order_id=42).info("loguru inside span")
            logger.debug("loguru debug not exported by default")
            try:
                1 / 0
            except ZeroDivisionError:
                logger.exception("loguru failure")
        """,
            receiver,
            tmp_path,
        )
        [row] = sink.wait_for("otel_logs", where=lambda r: r["Body"] == "loguru inside span")
        [span] = sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "job")
        [failure] = sink.wait_for("otel_logs", where=lambda r: r["Body"] == "loguru failure")
        bodies = [r["Body"] for r in sink.rows("otel_logs")]
    assert (row["TraceId"], row["SpanId"]) == (span["TraceId"], span["SpanId"])
    assert row["SeverityText"] == "info" and row["LogAttributes"]["order_id"] == "42"
    assert failure["LogAttributes"]["exception.type"] == "ZeroDivisionError"
    assert bodies.count("loguru inside span") == 1
    assert "loguru debug not exported by default" not in bodies
    assert "loguru inside span" in proc.stderr  # loguru's own stderr sink still prints


def test_structlog_over_stdlib_and_with_our_processor(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        run_script(
            """
            import logging, structlog
            from opentelemetry import trace
            from hyperdx.opentelemetry.integrations import structlog_processor
            structlog.configure(processors=[structlog.processors.add_log_level,
                                            structlog_processor,
                                            structlog.dev.ConsoleRenderer()])
            with trace.get_tracer("t").start_as_current_span("handle"):
                structlog.get_logger().warning("structlog native", user="ada")
            std = structlog.wrap_logger(logging.getLogger("stdlib-backed"),
                                        processors=[structlog.stdlib.render_to_log_kwargs])
            std.warning("structlog over stdlib", user="bob")
        """,
            receiver,
            tmp_path,
        )
        [native] = sink.wait_for("otel_logs", where=lambda r: r["Body"] == "structlog native")
        [span] = sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "handle")
        [over] = sink.wait_for("otel_logs", where=lambda r: r["Body"] == "structlog over stdlib")
    assert native["TraceId"] == span["TraceId"] and native["SeverityText"] == "warn"
    assert native["LogAttributes"]["user"] == "ada"
    assert over["LogAttributes"]["user"] == "bob"
