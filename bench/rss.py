"""Flask worker memory in a venv that also holds Django, FastAPI, Celery, aiohttp, httpx and
gRPC (with their instrumentations; see envs.APP_DEPS): an agent that imports every installed
instrumented library at start-up pays for all of them in every worker.

Gunicorn, 1 sync worker, 50 requests, then the worker's RSS and its module count (the app
reports len(sys.modules) at /modules). Median over rounds; configurations alternate.
"""

from __future__ import annotations

import http.client
import statistics
import subprocess
import sys
from typing import Any

import envs
import http_overhead
from common import (
    APP_CPUS,
    children,
    clean_env,
    free_port,
    otel_env,
    pinned,
    rss_kb,
    stop,
    wait_http,
)


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status}")
        return body
    finally:
        conn.close()


def one(cfg: http_overhead.Config, base_url: str) -> tuple[float, int]:
    port = free_port()
    env = clean_env({**otel_env(base_url, "bench-rss"), **dict(cfg.extra_env)})
    env.update(http_overhead.app_env())
    cmd = http_overhead._server_cmd(cfg, "flask", port)  # noqa: SLF001 - same servers
    log = open(envs.HOME / f"rss-{cfg.venv}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(pinned(cmd, APP_CPUS), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(port)
        for _ in range(50):
            _get(port, "/")
        modules = int(_get(port, "/modules"))
        worker = children(proc.pid)
        if not worker:
            raise RuntimeError("no worker process found")
        return rss_kb(worker[0]) / 1024, modules
    finally:
        stop(proc)
        log.close()


def run(base_url: str, rounds: int, names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    configs = [c for c in http_overhead.CONFIGS if names is None or c.name in names]
    configs = [c for c in configs if not c.extra_env]
    samples: dict[str, list[tuple[float, int]]] = {c.name: [] for c in configs}
    errors: dict[str, list[str]] = {c.name: [] for c in configs}
    for r in range(rounds):
        for cfg in configs if r % 2 == 0 else list(reversed(configs)):
            try:
                samples[cfg.name].append(one(cfg, base_url))
            except Exception as exc:  # noqa: BLE001 - reported in the table
                errors[cfg.name].append(str(exc)[:300])
            last = samples[cfg.name][-1] if samples[cfg.name] else errors[cfg.name][-1]
            print(f"[bench] rss round {r + 1}/{rounds} {cfg.name:26s} {last}", file=sys.stderr)
    base = samples.get("uninstrumented") or []
    base_mb = statistics.median(s[0] for s in base) if base else None
    rows = []
    for cfg in configs:
        got = samples[cfg.name]
        if not got:
            rows.append({"config": cfg.name, "error": "; ".join(errors[cfg.name])})
            continue
        mb = statistics.median(s[0] for s in got)
        rows.append(
            {
                "config": cfg.name,
                "rss_mb": mb,
                "added_mb": None if base_mb is None else mb - base_mb,
                "modules": int(statistics.median(s[1] for s in got)),
                "n": len(got),
                "errors": errors[cfg.name],
            }
        )
    return rows
