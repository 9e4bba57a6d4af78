"""Celery with a prefork pool and a real Redis broker, under the agent (B1, issue item 5).

Task spans join the producer's trace, task logs carry that trace, every pool child has its own
identity, and what the children buffered leaves when the worker is stopped (the children exit
through ``os._exit``, where atexit does not run).
"""

from __future__ import annotations

import collections
import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from prefork.harness import BIN, EXAMPLES, Server, free_port, record, server_env
from prefork.outcome import instance_of, pid_of
from prefork.runner import AGENT, BUFFER_UNTIL_STOP

REDIS = shutil.which("redis-server")
TASKS = 20


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A private Redis on an ephemeral port (a real broker; nothing shared between runs)."""
    if REDIS is None:
        pytest.skip("redis-server is not installed: run `bash .ci/services.sh`")
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    assert proc.poll() is None, "redis-server exited"
                    assert time.monotonic() < deadline, "redis-server did not answer PING in 10 s"
                    time.sleep(0.1)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def test_prefork_pool_under_agent(receiver, ping_url, redis_url) -> None:
    rec, sink = receiver
    common = {"CELERY_BROKER_URL": redis_url, "PYTHONPATH": str(EXAMPLES)}
    worker_env = server_env(rec, ping_url, "celery-worker", **common, **BUFFER_UNTIL_STOP)
    worker_argv = [
        AGENT,
        str(BIN / "celery"),
        "-A",
        "celery_app",
        "worker",
        "--pool",
        "prefork",
        "-c",
        "2",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    with Server(worker_argv, worker_env, port=0) as worker:
        worker.start(ready_log=" ready.", timeout=60)
        producer = subprocess.run(
            [AGENT, str(BIN / "python"), "celery_producer.py", str(TASKS)],
            env=server_env(rec, ping_url, "celery-producer", **common),
            cwd=EXAMPLES,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert producer.returncode == 0, producer.stderr.decode()[-3000:]
        sent = json.loads(producer.stdout.decode().strip().splitlines()[-1])
        early = [r for r in sink.rows("otel_traces") if r["SpanName"].startswith("run/")]
        assert not early, "the worker exported before it was stopped (60 s intervals)"
        stop_seconds = worker.stop(signal.SIGTERM, timeout=60)
        worker_pid = worker.pid

    trace_id = sent["trace_id"]
    child_pids = set(sent["pids"])
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and len(_runs(sink, trace_id)) < TASKS:
        time.sleep(0.1)
    runs = _runs(sink, trace_id)
    spans = sink.rows("otel_traces")
    publishes = [r for r in spans if r["TraceId"] == trace_id and r["SpanKind"] == "Producer"]
    logs = [r for r in sink.rows("otel_logs") if str(r["Body"]).startswith("handled task ")]
    tasks_total = sum(
        float(r["Value"]) for r in sink.rows("otel_metrics_sum") if r["MetricName"] == "app.tasks"
    )
    summary = {
        "tasks": TASKS,
        "run_spans": len(runs),
        "publish_spans": len(publishes),
        "task_logs": len(logs),
        "counter_total": tasks_total,
        "children": len(child_pids),
        "stop_seconds": round(stop_seconds, 2),
    }
    record("celery prefork agent SIGTERM buffered", **summary)
    print("celery", summary)

    assert len(publishes) == TASKS, summary
    assert len(runs) == TASKS, summary
    assert len({r["SpanId"] for r in runs}) == TASKS, "a task span was exported twice"
    publish_ids = {r["SpanId"] for r in publishes}
    assert all(r["ParentSpanId"] in publish_ids for r in runs), "task span not under its publish"
    clients = [r for r in spans if r["SpanKind"] == "Client" and r["ParentSpanId"] in _ids(runs)]
    assert len(clients) == TASKS, summary

    assert sorted(r["Body"] for r in logs) == sorted(f"handled task {i}" for i in range(TASKS))
    assert all(r["TraceId"] == trace_id and r["SpanId"] in _ids(runs) for r in logs), summary
    assert tasks_total == TASKS, summary

    instances: dict[int, set[str]] = collections.defaultdict(set)
    for row in runs + logs:
        instances[pid_of(row)].add(instance_of(row))
    assert set(instances) == child_pids, f"spans from {set(instances)}, tasks ran in {child_pids}"
    assert worker_pid not in instances
    assert all(len(v) == 1 for v in instances.values())
    assert len({next(iter(v)) for v in instances.values()}) == len(instances)
    assert stop_seconds < 15, summary


def _runs(sink: Any, trace_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in sink.rows("otel_traces")
        if r["TraceId"] == trace_id
        and r["SpanKind"] == "Consumer"
        and r["SpanName"].startswith("run/")
    ]


def _ids(rows: list[dict[str, Any]]) -> set[str]:
    return {r["SpanId"] for r in rows}
