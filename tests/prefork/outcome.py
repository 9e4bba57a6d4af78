"""What a multi-process scenario exported, and the checks every scenario must pass."""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]
WORK_LOG = "handled request "


def is_work_span(row: Row) -> bool:
    return row["SpanKind"] == "Server" and "/work" in row["SpanName"]


def is_work_log(row: Row) -> bool:
    return str(row["Body"]).startswith(WORK_LOG)


def pid_of(row: Row) -> int:
    return int(row["ResourceAttributes"]["process.pid"])


def instance_of(row: Row) -> str:
    return str(row["ResourceAttributes"]["service.instance.id"])


@dataclass
class Outcome:
    """Rows received for one scenario plus what the driver saw."""

    spans: list[Row]
    logs: list[Row]
    sums: list[Row]
    requests: int
    worker_pids: set[int]  # pids that answered /work requests
    master_pid: int
    stop_seconds: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def work_spans(self) -> list[Row]:
        return [r for r in self.spans if is_work_span(r)]

    @property
    def work_logs(self) -> list[Row]:
        return [r for r in self.logs if is_work_log(r)]

    def counter_total(self, name: str = "app.requests") -> float:
        """Sum of a counter over every series and export (delta) or of each series' last value
        (cumulative): the number of increments the workers made, if nothing was lost or
        exported twice."""
        rows = [r for r in self.sums if r["MetricName"] == name]
        delta = sum(float(r["Value"]) for r in rows if int(r["AggregationTemporality"]) == 1)
        last: dict[str, float] = {}
        for r in rows:
            if int(r["AggregationTemporality"]) == 2:
                key = instance_of(r)
                last[key] = max(last.get(key, 0.0), float(r["Value"]))
        return delta + sum(last.values())

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "server_spans": len(self.work_spans),
            "client_spans": len([r for r in self.spans if r["SpanKind"] == "Client"]),
            "work_logs": len(self.work_logs),
            "counter_total": self.counter_total(),
            "workers": len(self.worker_pids),
            "stop_seconds": None if self.stop_seconds is None else round(self.stop_seconds, 2),
            **self.notes,
        }


def snapshot(sink: Any, requests: int, worker_pids: set[int], master_pid: int) -> Outcome:
    return Outcome(
        spans=sink.rows("otel_traces"),
        logs=sink.rows("otel_logs"),
        sums=sink.rows("otel_metrics_sum"),
        requests=requests,
        worker_pids=worker_pids,
        master_pid=master_pid,
    )


def wait_complete(sink: Any, requests: int, timeout: float) -> None:
    """Wait (bounded) until the expected spans, logs and counter increments have arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = snapshot(sink, requests, set(), 0)
        if (
            len(out.work_spans) >= requests
            and len(out.work_logs) >= requests
            and out.counter_total() >= requests
        ):
            return
        time.sleep(0.1)


def assert_complete(out: Outcome, *, metrics: bool = True) -> None:
    """Every request exported exactly once, joined up, from the worker that served it."""
    n = out.requests
    spans = out.work_spans
    span_ids = [r["SpanId"] for r in spans]
    assert len(spans) == n, f"{len(spans)} server spans for {n} requests: {out.summary()}"
    assert len(set(span_ids)) == n, f"duplicate server spans: {out.summary()}"
    all_ids = [r["SpanId"] for r in out.spans]
    dupes = [k for k, c in collections.Counter(all_ids).items() if c > 1]
    assert not dupes, f"{len(dupes)} spans exported more than once"

    clients = [r for r in out.spans if r["SpanKind"] == "Client" and r["ParentSpanId"] in span_ids]
    assert len(clients) == n, f"{len(clients)} client spans under {n} server spans"

    logs = out.work_logs
    bodies = collections.Counter(r["Body"] for r in logs)
    assert sorted(bodies) == sorted(f"{WORK_LOG}{i}" for i in range(n)), (
        f"log records: {len(logs)} for {n} requests, repeated: "
        f"{[b for b, c in bodies.items() if c > 1][:5]}"
    )
    by_span = {r["SpanId"]: r for r in spans}
    for log in logs:
        parent = by_span.get(log["SpanId"])
        assert parent is not None, f"log {log['Body']!r} not inside a server span: {log}"
        assert log["TraceId"] == parent["TraceId"]
        assert instance_of(log) == instance_of(parent), "log and span from one worker differ"

    assert_identities(out)
    if metrics:
        total = out.counter_total()
        assert total == n, f"app.requests adds up to {total} for {n} requests: {out.summary()}"


def assert_identities(out: Outcome) -> None:
    """One identity per worker process, distinct between workers, never the master's."""
    rows = (
        out.work_spans + out.work_logs + [r for r in out.sums if r["MetricName"] == "app.requests"]
    )
    instances_by_pid: dict[int, set[str]] = collections.defaultdict(set)
    for row in rows:
        instances_by_pid[pid_of(row)].add(instance_of(row))
    pids = set(instances_by_pid)
    assert pids == out.worker_pids, (
        f"telemetry from pids {pids}, requests served by {out.worker_pids}"
    )
    assert out.master_pid not in pids
    for pid, instances in instances_by_pid.items():
        assert len(instances) == 1, f"pid {pid} exported under {len(instances)} instance ids"
    all_instances = [next(iter(v)) for v in instances_by_pid.values()]
    assert len(set(all_instances)) == len(all_instances), "two workers share service.instance.id"
