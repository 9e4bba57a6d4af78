"""Fork safety outside any server: inherited state, ``os._exit`` children, forking under load.

Children come from ``multiprocessing`` with the fork start method, which ends every child
with ``os._exit``: atexit never runs there, so the distro flushes before that exit.
"""

from __future__ import annotations

import collections
import json
import subprocess
from pathlib import Path
from typing import Any

from prefork.harness import BIN, record, server_env
from prefork.outcome import instance_of, pid_of

SCRIPT = Path(__file__).with_name("fork_script.py")
SLOW = {  # nothing leaves on a timer: all of it must leave at exit / os._exit
    "OTEL_BSP_SCHEDULE_DELAY": "60000",
    "OTEL_BLRP_SCHEDULE_DELAY": "60000",
    "OTEL_METRIC_EXPORT_INTERVAL": "60000",
}


def run_script(receiver: tuple[Any, Any], mode: str, count: int, **env: str) -> dict[str, Any]:
    rec, _sink = receiver
    done = subprocess.run(
        [str(BIN / "python"), str(SCRIPT), mode, str(count)],
        env=server_env(rec, "", f"fork-{mode}", **env),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def test_children_export_once_and_never_what_the_parent_recorded(receiver) -> None:
    _rec, sink = receiver
    result = run_script(receiver, "inherit", 3, **SLOW)
    children = result["children"]
    assert all(c["exitcode"] == 0 for c in children), children

    spans = sink.wait_for("otel_traces", count=4, timeout=5)
    names = collections.Counter(r["SpanName"] for r in spans)
    assert names == {"parent before fork": 1, "child 0": 1, "child 1": 1, "child 2": 1}, names
    logs = sink.wait_for("otel_logs", count=4, timeout=5)
    bodies = collections.Counter(r["Body"] for r in logs)
    expected = {"parent log before fork": 1, **{f"child log {i}": 1 for i in range(3)}}
    assert bodies == expected, bodies
    sums = [r for r in sink.rows("otel_metrics_sum") if r["MetricName"] == "fork.events"]
    assert sum(float(r["Value"]) for r in sums) == 4, sums

    child_pids = {c["pid"] for c in children}
    by_pid: dict[int, set[str]] = collections.defaultdict(set)
    for row in spans + logs + sums:
        by_pid[pid_of(row)].add(instance_of(row))
    assert set(by_pid) == child_pids | {result["parent"]}
    assert all(len(ids) == 1 for ids in by_pid.values()), by_pid
    assert len({next(iter(ids)) for ids in by_pid.values()}) == 4, "identities collide"
    exit_seconds = max(c["seconds"] for c in children)
    record("multiprocessing os._exit flush", children=3, slowest_child_seconds=exit_seconds)
    assert exit_seconds < 5


def test_forking_while_the_parent_exports_never_hangs(receiver) -> None:
    """The parent's exporter is busy (tiny batches, constant flood) at every fork: children
    must not inherit a held lock or a shared socket; each exports its span and exits."""
    _rec, sink = receiver
    result = run_script(
        receiver,
        "storm",
        20,
        OTEL_BSP_SCHEDULE_DELAY="1",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="5",
        OTEL_BLRP_SCHEDULE_DELAY="1",
        OTEL_METRIC_EXPORT_INTERVAL="50",
    )
    children = result["children"]
    hung = [c for c in children if c["exitcode"] != 0]
    assert not hung, f"children hung or failed: {hung}"
    rows = sink.wait_for(
        "otel_traces", count=20, timeout=10, where=lambda r: r["SpanName"].startswith("child ")
    )
    assert sorted(r["SpanName"] for r in rows) == sorted(f"child {i}" for i in range(20))
    assert {pid_of(r) for r in rows} == {c["pid"] for c in children}
    slowest = max(c["seconds"] for c in children)
    record("fork storm", children=20, slowest_child_seconds=slowest)
    assert slowest < 10


def test_every_resource_holder_sees_the_childs_identity(receiver) -> None:
    """The one shared Resource is updated in place and every holder made before the fork
    (tracers, loggers, the meter provider, spans started in the child) sees it."""
    result = run_script(receiver, "identity", 1)
    parent, child = result["parent"], result["child"]
    assert child["problems"] == {}
    holders = ("shared", "span", "tracer", "logger", "meters")
    for holder in holders:
        attrs = child[holder]
        assert attrs["process.pid"] == child["pid"], holder
        assert attrs["service.instance.id"] != parent["service.instance.id"], holder
        assert attrs["process.parent_pid"] == parent["process.pid"], holder
        assert attrs["service.name"] == parent["service.name"], holder
    assert len({child[h]["service.instance.id"] for h in holders}) == 1
    # the OTLP/HTTP exporters' connection pools are new in the child (never share a socket)
    # metrics: requests' http and https adapters; spans and logs: one urllib3 pool each
    assert child["adapters"] >= 4 and child["adapters_kept"] == [], child
