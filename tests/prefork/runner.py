"""Run one HTTP server scenario end to end and return what the receiver got."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from prefork.harness import BIN, Server, free_port, record, server_env
from prefork.outcome import Outcome, snapshot, wait_complete

#: Export intervals long enough that nothing leaves a worker before it is stopped.
BUFFER_UNTIL_STOP = {
    "OTEL_BSP_SCHEDULE_DELAY": "60000",
    "OTEL_BLRP_SCHEDULE_DELAY": "60000",
    "OTEL_METRIC_EXPORT_INTERVAL": "60000",
}
AGENT = str(BIN / "opentelemetry-instrument")


def run_http(
    receiver: tuple[Any, Any],
    ping_url: str,
    scenario: str,
    argv_for: Callable[[int], Sequence[str]],
    *,
    workers: int = 2,
    requests: int = 20,
    stop_signal: int = signal.SIGTERM,
    buffered: bool = False,
    env: dict[str, str] | None = None,
    stop_timeout: float = 60.0,
    concurrency: int = 4,
    settle: float = 0.0,
) -> Outcome:
    """Start the server, wait for every worker, send ``requests`` /work calls, stop it.

    ``buffered``: nothing may arrive before the stop, so everything counted was flushed by
    the stop itself.  Otherwise everything must arrive while the workers still run (their
    export threads work), and the stop must not add duplicates.
    """
    rec, sink = receiver
    port = free_port()
    extra = {**(BUFFER_UNTIL_STOP if buffered else {}), **(env or {})}
    server_environment = server_env(rec, ping_url, scenario.replace(" ", "-"), **extra)
    with Server(list(argv_for(port)), server_environment, port) as srv:
        srv.start()
        srv.wait_workers(workers)
        answers = srv.drive([f"/work/{i}" for i in range(requests)], concurrency)
        worker_pids = {int(a["pid"]) for a in answers}
        if buffered:
            early = snapshot(sink, requests, worker_pids, srv.pid)
            assert not early.work_spans, "buffered scenario exported before the stop"
        else:
            wait_complete(sink, requests, timeout=15)
        time.sleep(settle)  # let workers leave the request they just answered (see uWSGI)
        before_stop = snapshot(sink, requests, worker_pids, srv.pid)
        try:
            stop_seconds = srv.stop(stop_signal, timeout=stop_timeout)
        except Exception:
            print(srv.output())
            raise
        wait_complete(sink, requests, timeout=3)
        out = snapshot(sink, requests, worker_pids, srv.pid)
        out.stop_seconds = stop_seconds
        out.notes["spans_before_stop"] = len(before_stop.work_spans)
        out.notes["signal"] = signal.Signals(stop_signal).name
        out.notes["server_log"] = str(srv.log_path)
        record(scenario, **out.summary())
        print(scenario, out.summary())
        if out.requests != len(out.work_spans):
            print(srv.output())
        return out
