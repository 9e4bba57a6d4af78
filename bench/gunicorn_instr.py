"""Instructions (and simulated cache misses) per request of a real Gunicorn worker.

``instr_count.py`` counts the request path in process, in a tight loop; under Gunicorn the
same work runs between socket reads, HTTP parsing and Flask, and measured worker CPU is
~30 us per request higher than that loop predicts. This script tells whether the worker
executes more instructions than the loop (work we do only under Gunicorn) or the same
instructions at more cycles each (cold caches): it runs the Flask hello-world under
Gunicorn (1 sync worker, ``opentelemetry-instrument`` for ``ours``) inside cachegrind, sends
a fixed number of sequential requests, stops the server gracefully (so every span is
exported inside the count), and reports the worker's instructions per request from two runs
(``--few`` and ``--many`` requests: start-up and shutdown cancel out). All threads of the
worker count (the request thread and the exporters). With ``--cache-sim`` cachegrind also
simulates the caches (first-level data and instruction misses, last-level misses) of this
one process: misses per request say how much memory each request touches anew.

    .venv/bin/python bench/gunicorn_instr.py [--configs uninstrumented,ours]
        [--src /path/to/src] [--few 200] [--many 1200] [--cache-sim]

``--src`` points the "ours" bench venv's editable ``.pth`` at that tree for the run (put back
afterwards).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import envs
from common import BENCH, children, clean_env, free_port, otel_env, receiver
from flask_cpu_ab import pth_file


def _request(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"status {resp.status}")
    finally:
        conn.close()


def _wait(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _request(port)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


EXPORT_ON_FULL_BATCHES = {
    "OTEL_BSP_SCHEDULE_DELAY": "3600000",
    "OTEL_BLRP_SCHEDULE_DELAY": "3600000",
    "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
}
_EVENTS = re.compile(r"^events:\s*(.+)$", re.M)
_SUMMARY = re.compile(r"^summary:\s*(.+)$", re.M)


def _counts(path: Path) -> dict[str, int]:
    text = path.read_text()
    names = _EVENTS.search(text)
    values = _SUMMARY.search(text)
    assert names and values, path
    return dict(zip(names.group(1).split(), map(int, values.group(1).split()), strict=True))


def run(config: str, n: int, url: str, cache_sim: bool) -> dict[str, int]:
    """Counts of the worker process for ``n`` requests (after one warm-up request)."""
    venv = envs.venv_dir("vanilla" if config == "uninstrumented" else "ours")
    port = free_port()
    apps = str(BENCH / "apps")
    cmd = [str(venv / "bin" / "gunicorn"), "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}"]
    cmd += ["--chdir", apps, "--log-level", "warning", "--timeout", "600", "flask_app:app"]
    if config != "uninstrumented":
        cmd = [str(venv / "bin" / "opentelemetry-instrument"), *cmd]
    env = clean_env(otel_env(url, "bench-flask"))
    # Exports only when a batch is full (512 spans) and at shutdown, and metrics only at
    # shutdown: under cachegrind a run lasts minutes, and timer-driven exports would add a
    # run-length-dependent count of partial batches (the noise of a plain run is +-50k/req).
    env.update(EXPORT_ON_FULL_BATCHES)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        vg = ["valgrind", "--tool=cachegrind", f"--cache-sim={'yes' if cache_sim else 'no'}"]
        vg += ["--trace-children=yes", f"--cachegrind-out-file={out}/cg.%p"]
        env["PYTHONHASHSEED"] = "0"
        proc = subprocess.Popen(
            [*vg, *cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait(port, 300)
            workers = children(proc.pid)
            if len(workers) != 1:
                raise RuntimeError(f"expected one worker, found {workers}")
            for _ in range(n):
                _request(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(300)
        return _counts(out / f"cg.{workers[0]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="uninstrumented,ours")
    ap.add_argument("--src", type=Path, help="the src/ tree the 'ours' venv imports")
    ap.add_argument("--few", type=int, default=200)
    ap.add_argument("--many", type=int, default=1200)
    ap.add_argument("--cache-sim", action="store_true")
    args = ap.parse_args()
    pth = pth_file()
    original = pth.read_text()
    if args.src is not None:
        pth.write_text(f"{args.src.resolve()}\n")
    try:
        with receiver(count_items=True) as url:
            for config in args.configs.split(","):
                few = run(config, args.few, url, args.cache_sim)
                many = run(config, args.many, url, args.cache_sim)
                per = {k: round((many[k] - few[k]) / (args.many - args.few)) for k in many}
                row = {"config": config, "src": str(args.src or original.strip()), **per}
                print(json.dumps(row), flush=True)
    finally:
        pth.write_text(original)


if __name__ == "__main__":
    sys.exit(main())
