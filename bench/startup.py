"""Start-up time, RSS after start-up, and base install size.

Start-up: wall time of ``opentelemetry-instrument python -c pass`` per agent (median of
several runs), of ``configure_opentelemetry()`` for the HyperDX packages, and of bare
``python -c pass`` for reference. Install size: bytes that ``pip install <package>`` adds to
a fresh venv's site-packages (pip's own files are in both measurements).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import envs
from common import clean_env, otel_env

_RSS = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
_CONFIGURE = (
    "from hyperdx.opentelemetry import configure_opentelemetry; configure_opentelemetry(); " + _RSS
)


def _timed(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """(median seconds, median max-RSS MB) over ``runs`` runs, after one untimed warm-up."""
    times, rss = [], []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        dt = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr[-500:]}")
        if i:
            times.append(dt)
            lines = out.stdout.strip().splitlines()
            if lines and lines[-1].isdigit():
                rss.append(int(lines[-1]) / 1024)
    return statistics.median(times), (statistics.median(rss) if rss else 0.0)


def startup(
    base_url: str, runs: int, venvs: tuple[str, ...] = ("vanilla", "hdx040", "ours")
) -> list[dict[str, Any]]:
    env = clean_env(otel_env(base_url, "bench-startup"))
    rows = []
    cases = [
        ("python -c pass (no agent)", "vanilla", False, _RSS),
        ("vanilla distro 0.66b1: opentelemetry-instrument", "vanilla", True, _RSS),
        ("hyperdx 0.4.0: opentelemetry-instrument", "hdx040", True, _RSS),
        ("ours: opentelemetry-instrument", "ours", True, _RSS),
        ("hyperdx 0.4.0: configure_opentelemetry()", "hdx040", False, _CONFIGURE),
        ("ours: configure_opentelemetry()", "ours", False, _CONFIGURE),
    ]
    for label, venv, agent, code in cases:
        if venv not in venvs:
            continue
        vbin = envs.venv_dir(venv) / "bin"
        cmd = [str(vbin / "python"), "-c", code]
        if agent:
            cmd = [str(vbin / "opentelemetry-instrument"), *cmd]
        try:
            secs, rss = _timed(cmd, env, runs)
            rows.append({"case": label, "seconds": secs, "rss_mb": rss})
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            rows.append({"case": label, "error": str(exc)[:300]})
    return rows


def _site_bytes(vdir: Path) -> int:
    site = next((vdir / "lib").glob("python3*/site-packages"))
    return sum(f.stat().st_size for f in site.rglob("*") if f.is_file())


def install_size(which: list[str]) -> list[dict[str, Any]]:
    """MB added to an empty venv by each package spec (built in HOME/size-*)."""
    specs = {
        "ours": [str(envs.REPO)],
        "hyperdx 0.4.0": [
            "hyperdx-opentelemetry==0.4.0",
            "opentelemetry-exporter-otlp==1.45.1",
            *envs.OTEL_PINS,
        ],
        "vanilla distro 0.66b1 + OTLP/HTTP": [
            "opentelemetry-distro==0.66b1",
            "opentelemetry-exporter-otlp-proto-http==1.45.1",
            *envs.OTEL_PINS,
        ],
    }
    rows = []
    for label in which:
        vdir = envs.HOME / ("size-" + "".join(c if c.isalnum() else "-" for c in label))
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(vdir)], check=True)
        empty = _site_bytes(vdir)
        pip = [str(vdir / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
        out = subprocess.run([*pip, "install", *specs[label]], capture_output=True, text=True)
        if out.returncode != 0:
            rows.append({"package": label, "error": out.stderr[-300:]})
            continue
        added = _site_bytes(vdir) - empty
        listing = subprocess.run(  # not -q: pip list prints through its logger
            [str(vdir / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
            capture_output=True,
            text=True,
        ).stdout
        rows.append(
            {
                "package": label,
                "added_mb": added / 1e6,
                "packages": len([x for x in listing.splitlines() if x and "pip==" not in x]),
            }
        )
    return rows
