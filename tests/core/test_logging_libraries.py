"""B8: loguru and structlog records arrive once, with the current span's ids."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

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


def _structlog_rows(sink: Any, marker: str) -> list[dict[str, Any]]:
    """Every exported log row that mentions ``marker`` in its body or attributes."""
    sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "handle")
    time.sleep(1.0)  # the 100 ms export interval, several times: a second copy would be here
    return [
        r
        for r in sink.rows("otel_logs")
        if marker in str(r["Body"]) or marker in str(r["LogAttributes"].get("event", ""))
    ]


STRUCTLOG_SETUPS = {
    # The reported setup: stdlib loggers, events rendered to one JSON string.
    "stdlib-json": """
        structlog.configure(logger_factory=structlog.stdlib.LoggerFactory(),
                            processors=[structlog.processors.JSONRenderer()])
    """,
    # One chain for both kinds of logger: our processor must stand aside over stdlib loggers.
    "stdlib-json+processor": """
        from hyperdx.opentelemetry.integrations import structlog_processor
        structlog.configure(logger_factory=structlog.stdlib.LoggerFactory(),
                            processors=[structlog.processors.add_log_level, structlog_processor,
                                        structlog.processors.JSONRenderer()])
    """,
    # structlog's own loggers (no stdlib logging involved): our processor exports.
    "native": """
        from hyperdx.opentelemetry.integrations import structlog_processor
        structlog.configure(
            logger_factory=structlog.PrintLoggerFactory(),
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            processors=[structlog.processors.add_log_level, structlog_processor,
                        structlog.processors.JSONRenderer()])
    """,
    # stdlib logging formatted by structlog's ProcessorFormatter on the app's own handler.
    "processor-formatter": """
        structlog.configure(
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            processors=[structlog.stdlib.add_log_level,
                        structlog.stdlib.ProcessorFormatter.wrap_for_formatter])
        handler = logging.StreamHandler()
        handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.JSONRenderer()]))
        logging.getLogger().addHandler(handler)
    """,
}


@pytest.mark.parametrize("setup", list(STRUCTLOG_SETUPS))
def test_structlog_event_is_exported_once_with_its_timestamp(tmp_path: Path, setup: str) -> None:
    """One record per structlog event, with its time, the span's ids and the event's fields."""
    with running_receiver() as (receiver, sink):
        before = time.time()
        run_script(
            "import logging, structlog\n"
            "from opentelemetry import trace\n"
            + textwrap.dedent(STRUCTLOG_SETUPS[setup])
            + "log = structlog.get_logger('orders')\n"
            "with trace.get_tracer('t').start_as_current_span('handle'):\n"
            "    log.warning('structlog-warn-line', order=42)\n",
            receiver,
            tmp_path,
        )
        rows = _structlog_rows(sink, "structlog-warn-line")
        [span] = sink.rows("otel_traces")
    assert len(rows) == 1, f"{len(rows)} records for one event: {rows}"
    [row] = rows
    assert abs(float(row["Timestamp"]) - before) < 60, f"timestamp {row['Timestamp']!r}"
    assert (row["TraceId"], row["SpanId"]) == (span["TraceId"], span["SpanId"])
    assert row["SeverityText"].lower() in ("warn", "warning")
    assert row["LogAttributes"]["order"] == "42"
    body = row["Body"] if setup.startswith("stdlib-json") else None
    assert row["Body"] == (body or "structlog-warn-line")
    if body is not None:  # the rendered line, as the app's renderer wrote it
        assert json.loads(body) == {
            "event": "structlog-warn-line",
            "order": 42,
            **({"level": "warning"} if "processor" in setup else {}),
        }
