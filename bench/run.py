"""One command for the whole benchmark suite; prints one table (Markdown).

    .venv/bin/python bench/run.py            # full run (~40 min on 2 cores)
    .venv/bin/python bench/run.py --quick    # smoke run of everything (~6 min once the
                                             # peer venvs exist): CI runs it (.ci/run)
    .venv/bin/python bench/run.py --quick --here --only cpu,gil,components,path
                                # (~1 min: this interpreter, no peer venvs, no network)

--quick compares uninstrumented / vanilla distro / ours only (Flask and Django). The exit
status is 1 when a server or a measurement crashed or telemetry items were lost (spans at the
receiver fewer than requests served), never because of timings.

Peers get their own venvs under $HYPERDX_BENCH_HOME (default ~/.cache/hyperdx-bench), built
on first use. All traffic stays on 127.0.0.1. Results also go to
$HYPERDX_BENCH_HOME/results-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import envs  # noqa: E402
import http_overhead  # noqa: E402
import request_path  # noqa: E402
import rss  # noqa: E402
import startup  # noqa: E402
from common import APP_CPUS, BENCH, clean_env, pinned, receiver  # noqa: E402


def machine() -> str:
    cpu, mem = "?", 0
    with contextlib.suppress(OSError):
        names = [x for x in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in x]
        cpu = names[0].split(":", 1)[1].strip() if names else "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)

    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _json_lines(cmd: list[str], env: dict[str, str]) -> list[dict[str, Any]]:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[1]} failed: {out.stderr[-800:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def ours_python(here: bool) -> str:
    return sys.executable if here else str(envs.python_of("ours"))


def cpu_per_item(base_url: str, rounds: int, n: int, python: str) -> dict[str, dict[str, float]]:
    """Median CPU us per span / log for each mode, modes alternating within each round."""
    py = python
    modes = ["create", "plain", "fast", "ours"]
    samples: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes if r % 2 == 0 else list(reversed(modes)):
            cmd = [py, str(BENCH / "cpu_per_item.py"), "--mode", mode]
            cmd += ["--endpoint", base_url, "-n", str(n)]
            env = clean_env({})
            try:
                samples[mode] += _json_lines(pinned(cmd, APP_CPUS), env)
            except RuntimeError as exc:
                print(f"[bench] cpu {mode}: {exc}", file=sys.stderr)
            last = samples[mode][-1] if samples[mode] else {}
            print(f"[bench] cpu round {r + 1}/{rounds} {mode:6s} {last}", file=sys.stderr)
    out: dict[str, dict[str, float]] = {}
    plain = samples.get("plain", [])
    for mode, rows in samples.items():
        if rows:
            out[mode] = {
                key: statistics.median(row[key] for row in rows)
                for key in ("span_us", "log_us", "span_lost", "log_lost")
            }
            if len(rows) == len(plain):  # per-round ratios against plain, then the median
                for kind in ("span", "log"):
                    out[mode][f"{kind}_x_round"] = statistics.median(
                        r[f"{kind}_us"] / p[f"{kind}_us"] for r, p in zip(rows, plain, strict=True)
                    )
    return out


def span_cost(base_url: str, rounds: int, n: int, python: str) -> dict[str, dict[str, float]]:
    """Median CPU us per span on the app thread (and whole process) per mode, alternating."""
    modes = ["bare", "stock", "ours"]
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes if r % 2 == 0 else list(reversed(modes)):
            cmd = [python, str(BENCH / "span_cost.py"), "--mode", mode]
            cmd += ["--endpoint", base_url, "-n", str(n)]
            rows[mode] += _json_lines(pinned(cmd, APP_CPUS), clean_env({}))
    return {
        m: {k: statistics.median(x[k] for x in got) for k in ("thread_us", "process_us")}
        for m, got in rows.items()
        if got
    }


def gil(base_url: str, seconds: float, python: str) -> list[dict[str, Any]]:
    cmd = [python, str(BENCH / "gil_probe.py")]
    cmd += ["--endpoint", base_url, "--seconds", str(seconds)]
    return _json_lines(pinned(cmd, APP_CPUS), clean_env({}))


def _f(v: Any, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def render(res: dict[str, Any]) -> str:  # noqa: C901 - one table after another
    prev_stock_base: float | None = None
    lines = [f"Run {res['date']} on {res['machine']}; mode: {res['mode']}", ""]
    if "http" in res:
        lines += [
            "| framework | configuration | req/s | ratio | ratio/round | CPU us/req | CPU ratio "
            "| CPU ratio/round | p50 ms | p99 ms | p99 x | p99 x/round | RSS MB | n | lost |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["http"]:
            lines.append(
                f"| {r['framework']} | {r['config']} | {_f(r['rps'], '.0f')} | "
                f"{_f(r['ratio'], '.2f')} | {_f(r.get('pair_ratio'), '.2f')} | "
                f"{_f(r['cpu_us'], '.0f')} | {_f(r['cpu_ratio'], '.2f')} | "
                f"{_f(r.get('pair_cpu_ratio'), '.2f')} | "
                f"{_f(r['p50_ms'], '.2f')} | {_f(r['p99_ms'], '.1f')} | "
                f"{_f(r['p99_x'], '.1f')} | {_f(r.get('pair_p99_x'), '.1f')} | "
                f"{_f(r['rss_mb'], '.0f')} | {r['n']}"
                + (f" (errors: {len(r['errors'])})" if r["errors"] else "")
                + f" | {r.get('lost', 0)} |"
            )
        lines.append("")
    if "cpu" in res:
        plain = res["cpu"].get("plain", {})
        lines += [
            "| CPU per item (us) | span | x plain | x plain/round | log | x plain | x plain/round "
            "| lost spans/logs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for mode, v in res["cpu"].items():
            sx = v["span_us"] / plain["span_us"] if plain.get("span_us") else None
            lx = v["log_us"] / plain["log_us"] if plain.get("log_us") else None
            lines.append(
                f"| {mode} | {v['span_us']:.1f} | {_f(sx, '.2f')} | "
                f"{_f(v.get('span_x_round'), '.2f')} | {v['log_us']:.1f} | {_f(lx, '.2f')} | "
                f"{_f(v.get('log_x_round'), '.2f')} | {v['span_lost']:.0f}/{v['log_lost']:.0f} |"
            )
        lines.append("")
    if "span" in res:
        lines += ["| one HTTP server span | app-thread CPU us | process CPU us |", "|---|---|---|"]
        for mode, v in res["span"].items():
            lines.append(f"| {mode} | {v['thread_us']:.1f} | {v['process_us']:.1f} |")
        lines.append("")
    if "gil" in res:
        lines += [
            "| exporter (512-span batches) | GIL wait p99 ms | max ms | request p99 ms | "
            "encode us/span | export ms |",
            "|---|---|---|---|---|---|",
        ]
        for g in res["gil"]:
            lines.append(
                f"| {g['exporter']} | {g['wake_p99_ms']:.2f} | {g['wake_max_ms']:.1f} | "
                f"{g['req_p99_ms']:.2f} | {_f(g['encode_us_per_span'], '.1f')} | "
                f"{_f(g['export_ms'], '.1f')} |"
            )
        lines.append("")
    if "components" in res:
        lines += ["| export-path component | stock us | ours us | ratio | note |"]
        lines += ["|---|---|---|---|---|"]
        for c in res["components"]:
            lines.append(
                f"| {c['what']} | {c['stock_us']:.2f} | {c['ours_us']:.2f} | "
                f"{c['ours_us'] / c['stock_us']:.2f} | {c.get('note', '')} |"
            )
        lines.append("")
    if "path" in res:
        lines += ["| Flask request, in-process, layer by layer | CPU us/request | added |"]
        lines += ["|---|---|---|"]
        prev = None
        for p in res["path"]:
            if "error" in p:
                lines.append(f"| {p['step']} | error: {p['error'][:80]} | |")
                continue
            cur = p["cpu_us_per_request"]
            base = prev if not p["step"].startswith("+fast") else prev_stock_base
            added = "" if base is None else f"{cur - base:+.0f}"
            lines.append(f"| {p['step']} | {cur:.0f} | {added} |")
            if p["step"] == "instr+tracer+meter":
                prev_stock_base = cur
            if not p["step"].startswith("+"):
                prev = cur
        lines.append("")
    if "rss" in res:
        lines += [
            "| Flask worker, fat venv | RSS MB | added MB | modules | n |",
            "|---|---|---|---|---|",
        ]
        for s in res["rss"]:
            if "error" in s:
                lines.append(f"| {s['config']} | error: {s['error'][:80]} | | | |")
            else:
                lines.append(
                    f"| {s['config']} | {s['rss_mb']:.0f} | {_f(s['added_mb'], '+.0f')} | "
                    f"{s['modules']} | {s['n']} |"
                )
        lines.append("")
    if "startup" in res:
        lines += ["| start-up | seconds | max RSS MB |", "|---|---|---|"]
        for s in res["startup"]:
            if "error" in s:
                lines.append(f"| {s['case']} | error: {s['error'][:80]} | |")
            else:
                lines.append(f"| {s['case']} | {s['seconds']:.2f} | {s['rss_mb']:.0f} |")
        lines.append("")
    if "install" in res:
        lines += ["| base install | MB added to an empty venv | packages |", "|---|---|---|"]
        for s in res["install"]:
            if "error" in s:
                lines.append(f"| {s['package']} | error: {s['error'][:80]} | |")
            else:
                lines.append(f"| {s['package']} | {s['added_mb']:.1f} | {s['packages']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--rounds", type=int, help="alternating rounds (default 5, quick 1)")
    ap.add_argument("--duration", type=float, help="seconds of load per sample (10, quick 2)")
    ap.add_argument(
        "--only",
        default="http,rss,cpu,span,gil,components,path,startup,install",
        help="comma-separated parts: http,rss,cpu,span,gil,components,path,startup,install",
    )
    ap.add_argument(
        "--here",
        action="store_true",
        help="run cpu/span/gil/path with this interpreter (no peer venvs, no network)",
    )
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 5)
    duration = args.duration or (2.0 if args.quick else 10.0)
    parts = set(args.only.split(","))
    res: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "mode": f"{'quick' if args.quick else 'full'}, {rounds} round(s), {duration:g} s/sample",
    }
    if args.here and parts & {"http", "startup", "rss"}:
        ap.error("--here works with --only cpu,span,gil,components,path,install")
    peers = ("vanilla", "ours") if args.quick else ("vanilla", "hdx040", "ours")
    configs = [
        c for c in http_overhead.CONFIGS if not args.quick or c.name in http_overhead.QUICK_CONFIGS
    ]
    if not args.here:
        for venv in peers:
            envs.ensure(venv)
        res["versions"] = {v: envs.versions(v) for v in peers}
    py = ours_python(args.here)
    with receiver(count_items=True) as url:
        if "http" in parts:
            frameworks = ("flask", "django") if args.quick else http_overhead.FRAMEWORKS
            results = http_overhead.run(
                url, rounds=rounds, duration=duration, frameworks=frameworks, configs=configs
            )
            res["http"] = http_overhead.table(results)
        if "rss" in parts:
            res["rss"] = rss.run(url, rounds, tuple(c.name for c in configs))
        if "cpu" in parts:
            res["cpu"] = cpu_per_item(url, max(1, rounds), 2000 if args.quick else 10000, py)
        if "span" in parts:
            res["span"] = span_cost(url, max(1, rounds), 5000 if args.quick else 20000, py)
        if "gil" in parts:
            res["gil"] = gil(url, 1.5 if args.quick else 5.0, py)
        if "components" in parts:
            cmd = [py, str(BENCH / "components.py"), "--endpoint", url]
            res["components"] = _json_lines(pinned(cmd, APP_CPUS), clean_env({}))
        if "path" in parts:
            res["path"] = request_path.run_all(py, url, 1000 if args.quick else 3000)
        if "startup" in parts:
            res["startup"] = startup.startup(url, 3 if args.quick else 7, peers)
    if "install" in parts:
        peers = ["hyperdx 0.4.0", "vanilla distro 0.66b1 + OTLP/HTTP"]
        res["install"] = startup.install_size(["ours"] if args.quick else ["ours", *peers])
    text = render(res)
    print(text)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    envs.HOME.mkdir(parents=True, exist_ok=True)
    (envs.HOME / f"results-{stamp}.json").write_text(json.dumps(res, indent=2))
    (envs.HOME / f"results-{stamp}.md").write_text(text)
    failures = problems(res)
    for line in failures:
        print(f"[bench] FAILED: {line}", file=sys.stderr)
    if failures:
        sys.exit(1)


def problems(res: dict[str, Any]) -> list[str]:
    """Crashes and lost telemetry (what the CI smoke fails on); timings never count."""
    out = []
    for r in res.get("http", []):
        if r["errors"]:
            out.append(f"http {r['framework']} {r['config']}: {r['errors'][0]}")
        if r.get("lost"):
            out.append(f"http {r['framework']} {r['config']}: {r['lost']} spans lost")
    for part, key in (("startup", "case"), ("rss", "config"), ("path", "step")):
        for r in res.get(part, []):
            if r.get("error") or r.get("errors"):
                out.append(f"{part} {r[key]}: {r.get('error') or r['errors'][0]}")
    for mode, v in res.get("cpu", {}).items():
        if v.get("span_lost") or v.get("log_lost"):
            out.append(f"cpu {mode}: {v['span_lost']:.0f} spans, {v['log_lost']:.0f} logs lost")
    return out


if __name__ == "__main__":
    main()
