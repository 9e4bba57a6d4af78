"""Subprocess for the fork-safety tests (telemetry is process-global, so each run is fresh).

    python fork_script.py inherit N     parent records before forking N multiprocessing children
    python fork_script.py storm N       parent exports non-stop while forking N children
    python fork_script.py identity 1    what every resource holder sees in a forked child

Children leave through ``os._exit`` (multiprocessing's fork start method does), where atexit
never runs. Prints one JSON line: child pids, exit codes and how long each child took to exit.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import threading
import time

from opentelemetry import metrics, trace

from hyperdx.opentelemetry import configure_opentelemetry

log = logging.getLogger("fork_script")


def child(index: int, started: float) -> None:
    tracer = trace.get_tracer("fork_script")
    with tracer.start_as_current_span(f"child {index}"):
        log.warning("child log %d", index)
    metrics.get_meter("fork_script").create_counter("fork.events").add(1)


def run_children(count: int, sequential: bool) -> list[dict[str, float | int]]:
    ctx = multiprocessing.get_context("fork")
    results = []
    procs = []
    for i in range(count):
        proc = ctx.Process(target=child, args=(i, time.monotonic()))
        started = time.monotonic()
        proc.start()
        procs.append((proc, started))
        if sequential:
            proc.join(30)
            results.append(_result(proc, started))
    if not sequential:
        for proc, started in procs:
            proc.join(30)
            results.append(_result(proc, started))
    return results


def _result(proc: multiprocessing.process.BaseProcess, started: float) -> dict[str, float | int]:
    alive = proc.is_alive()
    if alive:
        proc.kill()
    return {
        "pid": proc.pid or 0,
        "exitcode": -999 if alive else (proc.exitcode or 0),
        "seconds": round(time.monotonic() - started, 3),
    }


def identity() -> None:
    """Tracers, loggers and meters made before the fork must carry the child's identity."""
    from opentelemetry._logs import get_logger

    pipeline = configure_opentelemetry()
    assert pipeline is not None
    configure_opentelemetry()  # idempotent: no second pipeline, no second at-fork hook
    from hyperdx.opentelemetry import forking

    forking.register(pipeline)  # registering again is harmless too
    tracer = trace.get_tracer("before-fork")
    otel_logger = get_logger("before-fork")
    adapters = _http_adapters(pipeline)
    for adapter in adapters:  # marks the parent's pools (ids could be reused in the child)
        adapter.inherited = True  # type: ignore[attr-defined]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        span = tracer.start_span("in child")
        seen = {
            "shared": dict(pipeline.resource.attributes),
            "span": dict(span.resource.attributes),  # type: ignore[attr-defined]
            "tracer": dict(tracer.resource.attributes),  # type: ignore[attr-defined]
            "logger": dict(otel_logger._resource.attributes),  # type: ignore[attr-defined]
            "meters": dict(pipeline.meter_provider._sdk_config.resource.attributes),
            "problems": forking.problems(),
            "adapters_kept": [
                repr(a) for a in _http_adapters(pipeline) if getattr(a, "inherited", False)
            ],
            "adapters": len(adapters),
            "pid": os.getpid(),
        }
        os.write(write, json.dumps(seen, default=str).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = json.loads(pipe.read())
    os.waitpid(pid, 0)
    print(json.dumps({"parent": dict(pipeline.resource.attributes), "child": child}))


def _http_adapters(pipeline: object) -> list[object]:
    """The connection pools of the three OTLP/HTTP exporters: requests adapters (metrics) and
    urllib3 pool managers (the fast span and log exporters' transport)."""
    from hyperdx.opentelemetry import forking

    found: list[object] = []
    for exporter in forking._exporters(pipeline):  # type: ignore[arg-type]
        session = forking._requests_session(exporter)
        if session is not None:
            found += list(session.adapters.values())
        transport = getattr(getattr(exporter, "_client", None), "_transport", None)
        pool = getattr(transport, "_pool", None)
        if pool is not None:
            found.append(pool)
    return found


def main(mode: str, count: int) -> None:
    if mode == "identity":
        identity()
        return
    configure_opentelemetry()
    tracer = trace.get_tracer("fork_script")
    counter = metrics.get_meter("fork_script").create_counter("fork.events")
    with tracer.start_as_current_span("parent before fork"):
        log.warning("parent log before fork")
    counter.add(1)
    stop = threading.Event()
    if mode == "storm":  # keep the parent's exporter busy (and holding its locks) while forking

        def flood() -> None:
            while not stop.is_set():
                with tracer.start_as_current_span("flood"):
                    pass
                time.sleep(0.0005)

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
    children = run_children(count, sequential=mode == "storm")
    stop.set()
    print(json.dumps({"parent": os.getpid(), "children": children}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
