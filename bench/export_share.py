"""Worker CPU per request spent outside the request path: the export side, per exporter.

``bench/run.py --only http`` measures a Gunicorn worker's whole CPU (request thread, export
threads, metric collection); ``instr_count.py`` / ``server_path.py`` measure the request path
alone with export kept out of the window. This script measures the difference, in process and
without a load generator: N Flask requests through the distro's real pipeline
(``configure_opentelemetry`` + the lean Flask instrumentation) with export ON to the counting
receiver (``receiver.py``, a subprocess on the other CPU), and splits the CPU per request by
thread (``pthread_getcpuclockid``, nanoseconds, not /proc ticks):

- ``request``: the thread serving requests (the request path, including the hand-off);
- ``export``: every other thread of the process (batch workers, the metric reader), plus the
  final ``force_flush`` of spans and logs (the tail of the run, exported synchronously), so
  every span of the window is exported and counted exactly once.

Variants, each in a fresh interpreter, alternating over rounds (medians reported):

- ``bare``: Flask without OpenTelemetry;
- ``none``: the distro with ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER=none`` (no span encoding);
- ``quiet``: export configured but never run in the window (what ``instr_count`` counts);
- ``traces`` / ``metrics`` / ``logs``: one exporter on, the others ``none``;
- ``all``: the three exporters on (the bench's configuration).

Metric collection happens once per ``OTEL_METRIC_EXPORT_INTERVAL`` (60 s by default), i.e.
not at all in a short window: its cost is measured apart (``metric_flush_us``: one
``force_flush`` of the meter provider, collection + encoding + POST) and amortised per request
at ``--rate`` requests per second.

    .venv/bin/python bench/export_share.py [--requests 20000] [--rounds 3]
        [--variants bare,quiet,traces,all] [--log-per-request] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import APP_CPUS, clean_env, otel_env, pinned, receiver, receiver_stats  # noqa: E402
from instr_count import wsgi_runner  # noqa: E402

VARIANTS = ("bare", "none", "quiet", "traces", "metrics", "logs", "all")
SIGNALS = ("TRACES", "METRICS", "LOGS")
QUIET = {
    "OTEL_BSP_SCHEDULE_DELAY": "3600000",
    "OTEL_BSP_MAX_QUEUE_SIZE": "200000",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "200000",
    "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
}
WARM_UP = 2000


def variant_env(variant: str, base_url: str) -> dict[str, str]:
    env = clean_env(otel_env(base_url, "export-share"))
    on = {"traces": {"TRACES"}, "metrics": {"METRICS"}, "logs": {"LOGS"}, "none": set()}.get(
        variant, set(SIGNALS)
    )
    for signal in SIGNALS:
        if signal not in on:
            env[f"OTEL_{signal}_EXPORTER"] = "none"
    if variant == "quiet":
        env.update(QUIET)
    env["PYTHONHASHSEED"] = "0"
    return env


# -- the child: one variant, one interpreter ------------------------------------------------
def _app(variant: str, log_per_request: bool) -> tuple[Any, Any]:
    import flask

    app = flask.Flask("bench")
    log = logging.getLogger("bench.request")

    @app.route("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        if log_per_request:
            log.warning("item %d", item_id)
        return "ok"

    pipeline = None
    if variant != "bare":
        from hyperdx.opentelemetry import configure_opentelemetry
        from hyperdx.opentelemetry.server.flask import FlaskInstrumentor

        pipeline = configure_opentelemetry(service_name="export-share", instrument=False)
        assert pipeline is not None
        FlaskInstrumentor.instrument_app(
            app, tracer_provider=pipeline.tracer_provider, meter_provider=pipeline.meter_provider
        )
    return app, pipeline


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of every live thread, by name (same-named threads summed)."""
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            seconds = time.clock_gettime(clock)
        except (OSError, ProcessLookupError):
            continue
        out[thread.name] = out.get(thread.name, 0.0) + seconds
    return out


def _flush(pipeline: Any) -> None:
    if pipeline is not None:
        pipeline.tracer_provider.force_flush()
        pipeline.logger_provider.force_flush()


def child(variant: str, n: int, log_per_request: bool) -> None:
    app, pipeline = _app(variant, log_per_request)
    run = wsgi_runner(app)
    run(WARM_UP)
    if variant != "quiet":
        _flush(pipeline)
    main = threading.current_thread().name
    proc0, threads0 = time.process_time(), _thread_cpu()
    run(n)
    request_s = time.thread_time()
    if variant != "quiet":
        _flush(pipeline)
    proc1, threads1 = time.process_time(), _thread_cpu()
    per_thread = {
        name: (threads1[name] - threads0.get(name, 0.0)) / n * 1e6
        for name in threads1
        if name != main
    }
    request = (threads1[main] - threads0[main]) / n * 1e6
    flush = (threads1[main] - request_s) / n * 1e6 if variant != "quiet" else 0.0
    row: dict[str, Any] = {
        "variant": variant,
        "process_us": (proc1 - proc0) / n * 1e6,
        "request_us": request - flush,
        "flush_us": flush,
        "threads_us": per_thread,
    }
    if pipeline is not None and variant in ("metrics", "all"):
        t0 = time.process_time()
        pipeline.meter_provider.force_flush()
        row["metric_flush_us"] = (time.process_time() - t0) * 1e6
    print(json.dumps(row), flush=True)
    os._exit(0)  # no shutdown export in anybody's numbers


# -- the parent ------------------------------------------------------------------------------
def _row(variant: str, base_url: str, n: int, log_per_request: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", variant, "--requests", str(n)]
    if log_per_request:
        cmd.append("--log-per-request")
    proc = subprocess.run(
        pinned(cmd, APP_CPUS),
        env=variant_env(variant, base_url),
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} failed: {proc.stderr[-2000:]}")
    return dict(json.loads(lines[-1]))


def measure(
    variants: list[str], n: int, rounds: int, log_per_request: bool
) -> dict[str, dict[str, Any]]:
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with receiver(count_items=True) as base_url:
        for r in range(rounds):
            order = variants if r % 2 == 0 else list(reversed(variants))
            for variant in order:
                before = receiver_stats(base_url)["items"]
                row = _row(variant, base_url, n, log_per_request)
                after = receiver_stats(base_url)["items"]
                row["received"] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
                samples[variant].append(row)
                print(
                    f"[export_share] round {r + 1}/{rounds} {variant:8s} "
                    f"process {row['process_us']:6.1f} us/req  request {row['request_us']:6.1f}"
                    f"  export threads {sum(row['threads_us'].values()):5.1f}"
                    f"  flush {row['flush_us']:4.1f}  received {row['received']}",
                    file=sys.stderr,
                    flush=True,
                )
    result: dict[str, dict[str, Any]] = {}
    for variant, rows in samples.items():
        threads = sorted({t for x in rows for t in x["threads_us"]})
        result[variant] = {
            "process_us": statistics.median(x["process_us"] for x in rows),
            "request_us": statistics.median(x["request_us"] for x in rows),
            "export_us": statistics.median(
                x["flush_us"] + sum(x["threads_us"].values()) for x in rows
            ),
            "threads_us": {
                t: statistics.median(x["threads_us"].get(t, 0.0) for x in rows) for t in threads
            },
            "received": rows[-1]["received"],
        }
        flushes = [x["metric_flush_us"] for x in rows if "metric_flush_us" in x]
        if flushes:
            result[variant]["metric_flush_us"] = statistics.median(flushes)
    return result


def report(result: dict[str, dict[str, Any]], rate: float, interval_s: float) -> str:
    bare = result.get("bare", {}).get("process_us")
    lines = [
        "| variant | process CPU us/req | added vs bare | request thread | export side |",
        "|---|---|---|---|---|",
    ]
    for variant, r in result.items():
        added = f"{r['process_us'] - bare:.1f}" if bare is not None else "-"
        lines.append(
            f"| {variant} | {r['process_us']:.1f} | {added} | {r['request_us']:.1f} "
            f"| {r['export_us']:.1f} |"
        )
    for variant, r in result.items():
        if "metric_flush_us" in r:
            per_req = r["metric_flush_us"] / (rate * interval_s)
            lines.append(
                f"\n{variant}: one metric collection + export {r['metric_flush_us']:.0f} us "
                f"= {per_req:.3f} us/request at {rate:g} req/s every {interval_s:g} s"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", choices=VARIANTS)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--log-per-request", action="store_true", help="the view logs a warning")
    ap.add_argument("--rate", type=float, default=2000.0, help="req/s for metric amortisation")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.requests, args.log_per_request)
        return
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        ap.error(f"--variants: unknown {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    result = measure(variants, args.requests, args.rounds, args.log_per_request)
    print(json.dumps(result, indent=1) if args.json else report(result, args.rate, 60.0))


if __name__ == "__main__":
    main()
