"""A/B pairs of ``bench/local_ingest.py``: old code (a source tree via PYTHONPATH) against
this checkout, alternated in the same minutes (order flipped every pair), because on a
shared machine items/s moves with other load while server CPU per 1k records moves less.

    python bench/local_ingest_ab.py --old-src /tmp/old/src --pairs 4 -- --protocol grpc

Everything after ``--`` goes to every ``local_ingest.py`` run (``--json`` is added).
Prints one JSON line per run, then the medians of both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).with_name("local_ingest.py")


def run_once(old_src: str | None, extra: list[str]) -> dict[str, Any]:
    env = dict(os.environ)
    if old_src:
        env["PYTHONPATH"] = old_src + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, str(BENCH), *extra, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-src", required=True, help="the old code's src directory")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("extra", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    extra = [a for a in args.extra if a != "--"]
    sides: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for pair in range(args.pairs):
        order = ("old", "new") if pair % 2 == 0 else ("new", "old")
        for side in order:
            result = run_once(args.old_src if side == "old" else None, extra)
            sides[side].append(result)
            print(
                json.dumps(
                    {
                        "pair": pair,
                        "side": side,
                        "items_per_s": result["items_per_s"],
                        "cpu_ms_per_1k": result["server_cpu_ms_per_1k_items"],
                        "rows_equal_acked": result["rows_equal_acked"],
                        "rows_per_insert": result["rows_per_insert"],
                        "accepted_ms": result["accepted_ms"],
                        "answers": result["answers"],
                        "rss_peak_mb": result["rss_peak_mb"],
                        "query_ms": result["query_ms"],
                        "threads": result["server_cpu_s_by_thread"],
                        "load": result["loadavg_1m_before_after"],
                        "host_ref_us": result.get("host_mapping_us_per_record"),
                    }
                ),
                flush=True,
            )
    summary = {
        side: {
            "items_per_s": statistics.median(r["items_per_s"] for r in runs),
            "cpu_ms_per_1k": statistics.median(r["server_cpu_ms_per_1k_items"] for r in runs),
            "all_rows_equal_acked": all(r["rows_equal_acked"] for r in runs),
        }
        for side, runs in sides.items()
    }
    print(json.dumps({"medians": summary}))


if __name__ == "__main__":
    main()
