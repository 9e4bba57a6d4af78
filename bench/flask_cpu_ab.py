"""A/B of the worker CPU our agent adds per Flask request, for two source trees.

Usage: ``python bench/flask_cpu_ab.py OLD_SRC NEW_SRC [--pairs N] [--duration S]``

Worker CPU per request under Gunicorn (1 sync worker, ``opentelemetry-instrument``) is noisy
on a shared machine (+-10 us), and drifts with the other load: comparing two runs made minutes
apart says little about a 5 us change. Here each round runs the uninstrumented server and
our agent from each tree, in an order that alternates every round, and reports per-round
*added* CPU (ours minus the uninstrumented run of the same round), then medians.

The "ours" bench venv imports the package through one editable ``.pth`` line: each run
points it at the tree under test, and the original line is put back at the end (even on
error or Ctrl-C). The venv itself is never rebuilt here (``envs.ensure`` would, from a
worktree whose path differs from the one the venv was built for).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import envs
import http_overhead
from common import receiver

PTH = "_editable_impl_hyperdx_opentelemetry.pth"


def pth_file() -> Path:
    found = list((envs.venv_dir("ours") / "lib").glob(f"python3*/site-packages/{PTH}"))
    if len(found) != 1:
        raise SystemExit(f"expected one {PTH} in the 'ours' bench venv, found {found}")
    return found[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old_src", type=Path, help="the src/ directory of the baseline tree")
    ap.add_argument("new_src", type=Path, help="the src/ directory of the tree under test")
    ap.add_argument("--pairs", type=int, default=4, help="rounds (each runs all three)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of load per run")
    ap.add_argument("--framework", default="flask", choices=("flask", "django", "fastapi"))
    ap.add_argument("--json", type=Path, help="write the samples here")
    args = ap.parse_args()
    trees = {"old": args.old_src.resolve(), "new": args.new_src.resolve()}
    for tree in trees.values():
        if not (tree / "hyperdx" / "opentelemetry").is_dir():
            raise SystemExit(f"{tree} has no hyperdx/opentelemetry package")
    envs.ensure("vanilla", quiet=True)
    pth = pth_file()
    original = pth.read_text()
    wrk = http_overhead.ensure_wrk()
    base_cfg = next(c for c in http_overhead.CONFIGS if c.name == "uninstrumented")
    ours_cfg = next(c for c in http_overhead.CONFIGS if c.name == "ours")
    added: dict[str, list[float]] = {"old": [], "new": []}
    samples: list[dict[str, object]] = []
    try:
        with receiver(count_items=True) as url:
            for r in range(args.pairs):
                order = ["base", "old", "new"] if r % 2 == 0 else ["new", "old", "base"]
                cpu: dict[str, float] = {}
                for which in order:
                    if which == "base":
                        cfg = base_cfg
                    else:
                        cfg = ours_cfg
                        pth.write_text(f"{trees[which]}\n")
                    s = http_overhead.run_one(
                        cfg, args.framework, url, wrk, args.duration, connections=4
                    )
                    cpu[which] = s.cpu_us_per_req
                    samples.append(
                        {
                            "round": r,
                            "which": which,
                            "cpu_us": s.cpu_us_per_req,
                            "rps": s.rps,
                            "p99_ms": s.p99_ms,
                            "lost": s.lost if cfg.agent else 0,
                        }
                    )
                    print(
                        f"[ab] round {r + 1}/{args.pairs} {which:4s} {s.cpu_us_per_req:6.1f} us/req"
                        f"  {s.rps:7.0f} req/s  p99 {s.p99_ms:5.1f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(0.5)
                for which in ("old", "new"):
                    added[which].append(cpu[which] - cpu["base"])
                print(
                    f"[ab] round {r + 1}: added old {added['old'][-1]:.1f} us, "
                    f"new {added['new'][-1]:.1f} us, new-old {cpu['new'] - cpu['old']:+.1f} us",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        pth.write_text(original)
    diffs = [n - o for o, n in zip(added["old"], added["new"], strict=True)]
    summary = {
        "old_added_us": added["old"],
        "new_added_us": added["new"],
        "median_old_added_us": statistics.median(added["old"]),
        "median_new_added_us": statistics.median(added["new"]),
        "median_new_minus_old_us": statistics.median(diffs),
    }
    print(json.dumps({k: v for k, v in summary.items()}, indent=1))
    if args.json:
        args.json.write_text(json.dumps({**summary, "samples": samples}, indent=1))


if __name__ == "__main__":
    main()
