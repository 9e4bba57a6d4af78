"""A small closed-loop HTTP load generator (keep-alive connections, one thread each).

Measures what the app's users feel: per-request latency from the client side, and how many
requests were answered 200 (each one the app's telemetry must account for).
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from dataclasses import dataclass, field

__all__ = ["LoadResult", "drive", "rss_bytes"]


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    ok: int = 0
    errors: int = 0

    def percentile_ms(self, q: float) -> float:
        data = sorted(self.latencies)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, int(q / 100.0 * len(data)))] * 1000.0

    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000.0 if self.latencies else float("nan")


def drive(port: int, total: int, *, path: str = "/", connections: int = 2) -> LoadResult:
    """Send ``total`` GETs to 127.0.0.1:``port`` over ``connections`` keep-alive connections."""
    result = LoadResult()
    lock = threading.Lock()
    share = [
        total // connections + (1 if i < total % connections else 0) for i in range(connections)
    ]

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        lat: list[float] = []
        ok = errors = 0
        for _ in range(n):
            start = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            lat.append(time.perf_counter() - start)
            if resp.status == 200:
                ok += 1
            else:
                errors += 1
        conn.close()
        with lock:
            result.latencies.extend(lat)
            result.ok += ok
            result.errors += errors

    threads = [threading.Thread(target=worker, args=(n,)) for n in share]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
