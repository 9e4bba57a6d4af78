"""Request overhead: hello-world Flask and Django (Gunicorn, 1 sync worker) and FastAPI
(uvicorn, 1 worker) under wrk, with each configuration run alternately, several rounds, medians.

Items lost: the counting receiver is reset before each server starts; after the server has
stopped (SIGTERM, graceful) the spans it received are compared with the requests served
(warm-up included). Every request makes at least one span, so `requests - spans`, if positive,
is a lower bound of what was lost.

The server is pinned to CPU 0; wrk and the counting receiver share CPU 1, so the exporter
thread competes with the request thread for CPU 0 and the GIL, as it would in production.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import envs
from common import (
    APP_CPUS,
    AUX_CPUS,
    BENCH,
    children,
    clean_env,
    cpu_seconds,
    free_port,
    otel_env,
    pinned,
    receiver_reset,
    receiver_stats,
    rss_kb,
    stop,
    wait_http,
)


@dataclass(frozen=True)
class Config:
    name: str
    venv: str
    agent: bool
    extra_env: tuple[tuple[str, str], ...] = ()


CONFIGS = [
    Config("uninstrumented", "vanilla", agent=False),
    Config("vanilla distro 0.66b1", "vanilla", agent=True),
    Config("hyperdx 0.4.0", "hdx040", agent=True),
    Config("ours", "ours", agent=True),
    Config(
        "ours + network capture",
        "ours",
        agent=True,
        extra_env=(("HYPERDX_ENABLE_ADVANCED_NETWORK_CAPTURE", "1"),),
    ),
]
FRAMEWORKS = ("flask", "django", "fastapi")
# One configuration per peer, same order as CONFIGS: what --quick runs.
QUICK_CONFIGS = ("uninstrumented", "vanilla distro 0.66b1", "ours")


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    rss_mb: float
    cpu_us_per_req: float
    requests: int = 0
    spans: int | None = None  # None: not counted (uninstrumented)

    @property
    def lost(self) -> int:
        return 0 if self.spans is None else max(0, self.requests - self.spans)


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def median(self, attr: str) -> float | None:
        values = [getattr(s, attr) for s in self.samples]
        return statistics.median(values) if values else None


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("[bench] installing wrk (Debian package)", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    path = shutil.which("wrk")
    if not path:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
        path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is not installed and could not be installed with apt-get")
    return path


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unparseable wrk latency {text!r}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]
    return float(m.group(1)) * scale


def parse_wrk(out: str) -> tuple[float, float, float, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    return rps, p50, p99, total


def _server_cmd(cfg: Config, framework: str, port: int) -> list[str]:
    vbin = Path(envs.venv_dir(cfg.venv)) / "bin"
    apps = str(BENCH / "apps")
    if framework in ("flask", "django"):
        app = "flask_app:app" if framework == "flask" else "django_app:application"
        cmd = [str(vbin / "gunicorn"), "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}"]
        cmd += ["--chdir", apps, "--log-level", "warning", app]
    else:
        cmd = [str(vbin / "uvicorn"), "--app-dir", apps, "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--workers", "1", "--no-access-log"]
        cmd += ["--log-level", "warning", "fastapi_app:app"]
    if cfg.agent:
        cmd = [str(vbin / "opentelemetry-instrument"), *cmd]
    return cmd


def run_one(
    cfg: Config, framework: str, base_url: str, wrk: str, duration: float, connections: int
) -> Sample:
    port = free_port()
    env = clean_env({**otel_env(base_url, f"bench-{framework}"), **dict(cfg.extra_env)})
    env.update(app_env())
    receiver_reset(base_url)
    log = open(envs.HOME / f"server-{cfg.venv}-{framework}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        pinned(_server_cmd(cfg, framework, port), APP_CPUS),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(port)
        load = [wrk, "-t1", f"-c{connections}", "--latency", "--timeout", "2s"]
        url = f"http://127.0.0.1:{port}/"
        # Warm-up (imports, first exports, caches), then the measured run.
        warm = subprocess.run(
            pinned([*load, "-d", "1s", url], AUX_CPUS), capture_output=True, text=True, check=True
        ).stdout
        worker = children(proc.pid) if framework != "fastapi" else [proc.pid]
        if not worker:
            raise RuntimeError("no worker process found")
        cpu0 = cpu_seconds(worker[0])
        out = subprocess.run(
            pinned([*load, "-d", f"{duration:g}s", url], AUX_CPUS),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        # Worker CPU per request is robust to other load on the machine (req/s is not).
        cpu = cpu_seconds(worker[0]) - cpu0
        rps, p50, p99, total = parse_wrk(out)
        if "Non-2xx" in out:
            raise RuntimeError(f"non-2xx responses under load: {out}")
        rss = rss_kb(worker[0]) / 1024
        sample = Sample(rps, p50, p99, rss, cpu / max(total, 1) * 1e6)
        sample.requests = total + parse_wrk(warm)[3]
    finally:
        stop(proc)
        log.close()
    if cfg.agent:
        sample.spans = spans_received(base_url, sample.requests)
    return sample


def app_env() -> dict[str, str]:
    """Django's settings module, importable by agents that instrument at start-up."""
    return {"DJANGO_SETTINGS_MODULE": "django_settings", "PYTHONPATH": str(BENCH / "apps")}


def spans_received(base_url: str, expected: int, timeout: float = 10.0) -> int:
    """Spans at the receiver once `expected` arrived or nothing new came for `timeout` s."""
    last, deadline = -1, time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = int(receiver_stats(base_url)["items"].get("traces", 0))
        if got >= expected:
            return got
        if got != last:
            last, deadline = got, time.monotonic() + timeout
        time.sleep(0.2)
    return max(last, 0)


def run(
    base_url: str,
    *,
    rounds: int,
    duration: float,
    connections: int = 4,
    configs: list[Config] | None = None,
    frameworks: tuple[str, ...] = FRAMEWORKS,
) -> dict[tuple[str, str], Series]:
    wrk = ensure_wrk()
    configs = configs or CONFIGS
    for venv in {c.venv for c in configs}:
        envs.ensure(venv)
    results: dict[tuple[str, str], Series] = {
        (f, c.name): Series() for f in frameworks for c in configs
    }
    for r in range(rounds):
        for framework in frameworks:
            # Alternate the order each round so drift does not favour one configuration.
            order = configs if r % 2 == 0 else list(reversed(configs))
            for cfg in order:
                series = results[(framework, cfg.name)]
                try:
                    sample = run_one(cfg, framework, base_url, wrk, duration, connections)
                    series.samples.append(sample)
                    status = (
                        f"{sample.rps:8.0f} req/s  p99 {sample.p99_ms:6.1f} ms  "
                        f"{sample.cpu_us_per_req:6.0f} us CPU/req  "
                        f"spans {sample.spans}/{sample.requests} req"
                    )
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    series.errors.append(str(exc)[:300])
                    status = f"error: {series.errors[-1]}"
                print(
                    f"[bench] round {r + 1}/{rounds} {framework:7s} {cfg.name:26s} {status}",
                    file=sys.stderr,
                    flush=True,
                )
                time.sleep(0.5)
    return results


def table(results: dict[tuple[str, str], Series]) -> list[dict[str, Any]]:
    rows = []
    base: dict[str, float | None] = {}
    for (framework, name), series in results.items():
        if name == "uninstrumented":
            base[framework] = series.median("rps")
    for (framework, name), series in results.items():
        rps = series.median("rps")
        b = base.get(framework)
        base_series = results.get((framework, "uninstrumented"))
        base_p99 = base_series.median("p99_ms") if base_series else None
        p99 = series.median("p99_ms")
        cpu = series.median("cpu_us_per_req")
        base_cpu = base_series.median("cpu_us_per_req") if base_series else None
        # Per-round ratios (each sample against the uninstrumented sample of the same round)
        # cancel drift in the machine's load better than a ratio of two medians.
        pair_rps = pair_cpu = pair_p99 = None
        if base_series and len(base_series.samples) == len(series.samples) and series.samples:
            pairs = list(zip(base_series.samples, series.samples, strict=True))
            pair_rps = statistics.median(x.rps / b.rps for b, x in pairs)
            pair_cpu = statistics.median(b.cpu_us_per_req / x.cpu_us_per_req for b, x in pairs)
            pair_p99 = statistics.median(x.p99_ms / b.p99_ms for b, x in pairs)
        rows.append(
            {
                "framework": framework,
                "pair_ratio": pair_rps,
                "pair_cpu_ratio": pair_cpu,
                "pair_p99_x": pair_p99,
                "config": name,
                "rps": rps,
                "ratio": (rps / b) if rps and b else None,
                "p50_ms": series.median("p50_ms"),
                "p99_ms": p99,
                "p99_x": (p99 / base_p99) if p99 and base_p99 else None,
                "rss_mb": series.median("rss_mb"),
                "cpu_us": cpu,
                "cpu_ratio": (base_cpu / cpu) if cpu and base_cpu else None,
                "n": len(series.samples),
                "lost": sum(x.lost for x in series.samples),
                "errors": series.errors,
                "samples": [dataclasses.asdict(x) for x in series.samples],
            }
        )
    return rows
