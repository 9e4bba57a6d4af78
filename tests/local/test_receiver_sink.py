"""MemorySink: the reference sink and the project's test double."""

from __future__ import annotations

import threading
import time

import pytest

from hyperdx.local.sinks import MemorySink, Sink


def test_rows_are_kept_per_table_in_order_and_copied() -> None:
    sink: Sink = MemorySink()
    sink.write("otel_logs", [{"Body": "a"}, {"Body": "b"}])
    sink.write("otel_traces", [{"SpanName": "s"}])
    sink.write("otel_logs", [])
    assert isinstance(sink, MemorySink)
    snapshot = sink.rows("otel_logs")
    snapshot.clear()
    assert [row["Body"] for row in sink.rows("otel_logs")] == ["a", "b"]
    assert sink.tables() == {"otel_logs": 2, "otel_traces": 1}
    assert sink.rows("nothing") == []
    sink.clear()
    assert sink.tables() == {}


def test_wait_for_returns_as_soon_as_enough_rows_match() -> None:
    sink = MemorySink()

    def writer() -> None:
        for index in range(5):
            time.sleep(0.01)
            sink.write("otel_logs", [{"n": index}])

    thread = threading.Thread(target=writer)
    started = time.monotonic()
    thread.start()
    rows = sink.wait_for("otel_logs", 2, timeout=5, where=lambda row: row["n"] % 2 == 1)
    thread.join()
    assert [row["n"] for row in rows] == [1, 3]
    assert time.monotonic() - started < 2


def test_wait_for_timeout_explains_what_was_there() -> None:
    sink = MemorySink()
    sink.write("otel_logs", [{"n": 1}])
    with pytest.raises(AssertionError) as caught:
        sink.wait_for("otel_logs", 2, timeout=0.05, where=lambda row: row["n"] > 0)
    message = str(caught.value)
    assert "2 row(s) matching the predicate in 'otel_logs'" in message
    assert "1 matched, 1 in the table" in message and "{'otel_logs': 1}" in message


def test_concurrent_writers_lose_nothing() -> None:
    sink = MemorySink()

    def writer(i: int) -> None:
        for j in range(200):
            sink.write("t", [{"i": i, "j": j}])

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sink.wait_for("t", 800, timeout=1)) == 800
