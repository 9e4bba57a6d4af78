"""The fast export path against the faulty collector, in-process: exact counts per fault."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from hyperdx.opentelemetry.export import dropped, make_span_processor

from faults.collector import IN_FLIGHT_AT_DEADLINE, FaultyCollector, summary_count


@pytest.fixture(autouse=True)
def _fresh_distro_drop_account() -> Iterator[None]:
    yield
    from hyperdx.opentelemetry import drops

    drops.reset()


def _emit(collector: FaultyCollector, n: int) -> tuple[dict[str, int], float]:
    """``n`` spans in one batch through our processor; (drop counts added, flush seconds)."""
    before = dropped()
    processor = make_span_processor(
        collector.endpoint + "/v1/traces", max_export_batch_size=n, schedule_delay_millis=60_000
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "faults"}))
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("faults")
    for i in range(n):
        with tracer.start_as_current_span(f"work-{i}") as span:
            span.set_attribute("padding", "x" * 100)
    start = time.monotonic()
    processor.force_flush(30_000)
    took = time.monotonic() - start
    provider.shutdown()
    after = dropped()
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}, took


def test_413_splits_the_batch_until_it_fits(tmp_path: Path) -> None:
    with FaultyCollector("413", tmp_path, max_body=2500) as collector:
        drops, _ = _emit(collector, 64)
    got = collector.received
    assert drops == {}
    assert got.answered[413] >= 3  # 64 -> 32 -> 16 ... until a half fits
    assert len(got.spans) == 64 and got.duplicates() == 0


def test_413_for_a_single_item_is_a_counted_drop(tmp_path: Path) -> None:
    with FaultyCollector("413", tmp_path, max_body=40) as collector:
        drops, _ = _emit(collector, 8)
    # 8 -> 4+4 -> 2+2+2+2 -> 1 x 8: a full binary tree of 15 requests, all refused.
    assert collector.received.answered == {413: 15}
    assert drops == {"spans_too_large": 8}


def test_partial_success_rejections_are_counted(tmp_path: Path) -> None:
    with FaultyCollector("partial", tmp_path) as collector:
        drops, _ = _emit(collector, 10)
    assert collector.received.rejected_spans == 1 and len(collector.received.spans) == 9
    assert drops == {"spans_rejected": 1}


def test_retry_after_is_honoured_and_the_retry_is_not_duplicated(tmp_path: Path) -> None:
    with FaultyCollector("503", tmp_path, retry_after=1) as collector:
        drops, took = _emit(collector, 20)
    got = collector.received
    assert [status for _, _, status in got.exchanges] == [503, 200]
    (_, first, _), (_, second, _) = got.exchanges
    assert second - first >= 0.95 and took >= 0.95
    assert drops == {} and len(got.spans) == 20 and got.duplicates() == 0


def test_a_long_retry_after_is_not_waited_for(tmp_path: Path) -> None:
    with FaultyCollector("503-long", tmp_path) as collector:
        drops, took = _emit(collector, 20)
    assert collector.received.answered == {503: 1}
    assert took < 5.0  # not 3600 s: beyond the export timeout, the batch is dropped at once
    assert drops == {"spans_export_failed": 20}


_HELD_SCRIPT = """
import logging
from hyperdx.opentelemetry import configure_opentelemetry

configure_opentelemetry()
log = logging.getLogger("held")
for i in range(2000):
    log.warning("held %d", i)
"""


def test_a_batch_in_flight_at_the_deadline_is_not_counted_as_lost(tmp_path: Path) -> None:
    """The collector takes a batch and answers after the shutdown deadline: the batch may
    have arrived, so it is counted apart; the queued rest is lost for sure and never sent."""
    env = {
        **os.environ,
        "OTEL_SERVICE_NAME": "held",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_TRACES_EXPORTER": "none",
        "HYPERDX_SHUTDOWN_TIMEOUT": "1",
    }
    with FaultyCollector("held", tmp_path, hold=10.0) as collector:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.endpoint
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", _HELD_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - start
        time.sleep(0.5)  # anything still sent after exit would arrive by now
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = next(
        (ln for ln in proc.stderr.splitlines() if "telemetry dropped in this process" in ln), ""
    )
    arrived = len(collector.received.logs)
    in_flight = summary_count(summary, "logs", IN_FLIGHT_AT_DEADLINE)
    lost = summary_count(summary, "logs", "shutdown deadline reached")
    assert took < 8.0, proc.stderr[-3000:]  # the 10 s hold is not waited for
    assert collector.received.requests == 1, summary  # nothing sent once the rest was counted
    assert arrived == in_flight > 0, summary
    assert in_flight + lost == 2000, summary
    assert "export failed" not in summary, summary
