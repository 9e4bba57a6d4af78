"""Server CPU per call of the receiver's listeners alone: OTLP/gRPC against OTLP/HTTP.

The real :class:`~hyperdx.local.receiver.Receiver` runs in this process with a sink that
drops what it is given, so chDB (its inserts and, above all, its background merges, which
make ``local_ingest.py``'s CPU per record swing by +-20 % between runs) is out of the figure.
A load client in a subprocess (``local_ingest.py``'s h2 gRPC client or its aiohttp one: the
same gzip bodies, 8 exporters back to back) sends ``--calls`` requests; the server's CPU is
read per thread from /proc (user and system apart), so the client's share of the two cores
does not count. What is left is what the protocol layer costs, plus the decode and mapping
both protocols share. Counts CPU time, not wall time, so it needs no bench lock to be read,
but hold it anyway: the client's load moves what a shared core caches.

    python bench/grpc_layer_cost.py --protocol grpc --calls 800 --batch 512

``LAYER_COST_LISTENER=module:Class`` (importable from the bench directory) replaces the gRPC
listener class, e.g. ``grpc_aio_listener:AioGrpcListener``, grpcio's asyncio server.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import local_ingest  # noqa: E402  (the bench directory's own module)

KEY = "layer-cost-key"


class DropSink:
    """Takes rows and forgets them: the listeners' cost without the store's."""

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        return None


def _python_thread_names() -> dict[int, str]:
    return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


def _cpu_by_thread() -> dict[int, tuple[str, float, float]]:
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float, float]] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            head, rest = (task / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        out[int(task.name)] = (
            head.split("(", 1)[1],
            int(fields[11]) / tick,
            int(fields[12]) / tick,
        )
    return out


def _group(name: str) -> str:
    for prefix in ("hyperdx-grpc", "hyperdx-receiver_", "ThreadPoolExecutor"):
        if name.startswith(prefix):
            return prefix.rstrip("_") + "_*"
    return name


def _variant(args: argparse.Namespace) -> None:
    """Apply ``--grpc-option`` / ``--grpc-workers`` / ``--switch-interval`` (A/B knobs) by
    wrapping ``grpc.server`` as the listener calls it."""
    import grpc

    from hyperdx.local import receiver_grpc

    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    extra = [(k, int(v) if v.lstrip("-").isdigit() else v) for k, v in args.grpc_option]
    real_server = grpc.server

    def server(pool: Any, options: Any = (), **kwargs: Any) -> Any:
        if args.grpc_workers:
            pool._max_workers = args.grpc_workers
        return real_server(pool, options=[*options, *extra], **kwargs)

    receiver_grpc.grpc.server = server  # type: ignore[attr-defined]
    if os.environ.get("LAYER_COST_LISTENER"):  # a prototype listener class, "module:Class"
        import importlib

        from hyperdx.local import receiver

        module, _, name = os.environ["LAYER_COST_LISTENER"].partition(":")
        receiver.GrpcListener = getattr(importlib.import_module(module), name)  # type: ignore[misc]


class GcTally:
    """Collections per generation and the time they took (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.counts[info["generation"]] += 1
            self.seconds[info["generation"]] += time.perf_counter() - self._began


def serve(args: argparse.Namespace) -> dict[str, Any]:
    import gc

    from hyperdx.local.receiver import Receiver

    _variant(args)
    collections = GcTally()

    with Receiver(DropSink(), http_port=0, grpc_port=0, api_keys=[KEY]) as receiver:
        port = receiver.grpc_port if args.protocol == "grpc" else receiver.http_port
        client = [sys.executable, __file__, "--client", "--protocol", args.protocol]
        client += ["--port", str(port), "--batch", str(args.batch)]
        client += ["--concurrency", str(args.concurrency)]
        client += ["--identity", "--calls"] if args.identity else ["--calls"]
        warm = subprocess.run([*client, str(4 * args.concurrency)], capture_output=True)
        if warm.returncode:  # the warm-up fills grpc's and the pools' threads first
            raise SystemExit(warm.stderr.decode())
        before = _cpu_by_thread()
        gc.callbacks.append(collections)
        started = time.monotonic()
        done = subprocess.run([*client, str(args.calls)], capture_output=True, text=True)
        wall = time.monotonic() - started
        after = _cpu_by_thread()
        gc.callbacks.remove(collections)
        names = _python_thread_names()
        if done.returncode:
            raise SystemExit(done.stderr)
        answers = json.loads(done.stdout)
    by_group: dict[str, list[float]] = {}
    for tid, (comm, user, system) in after.items():
        _, was_user, was_system = before.get(tid, (comm, 0.0, 0.0))
        group = by_group.setdefault(_group(names.get(tid, comm)), [0.0, 0.0])
        group[0] += user - was_user
        group[1] += system - was_system
    calls = answers["ok"]
    total = sum(u + s for u, s in by_group.values())
    return {
        "protocol": args.protocol,
        "variant": {
            "grpc_options": dict(args.grpc_option),
            "grpc_workers": args.grpc_workers or None,
            "switch_interval": args.switch_interval or None,
            "env": {k: v for k, v in os.environ.items() if k.startswith("GRPC_")},
        },
        "batch": args.batch,
        "gzip": not args.identity,
        "concurrency": args.concurrency,
        "calls_ok": calls,
        "wall_ms_per_call_per_exporter": round(wall / calls * args.concurrency * 1000, 2)
        if calls
        else None,
        "answers": answers["statuses"],
        "wall_s": round(wall, 2),
        "server_cpu_s": round(total, 2),
        "server_us_per_call": round(total / calls * 1e6) if calls else None,
        "gc_per_1k_calls": {
            "collections": [round(n / calls * 1000, 1) for n in collections.counts],
            "ms": [round(t / calls * 1e6, 1) for t in collections.seconds],
        }
        if calls
        else None,
        "server_us_per_call_by_thread": {
            name: {"user": round(u / calls * 1e6), "sys": round(s / calls * 1e6)}
            for name, (u, s) in sorted(by_group.items(), key=lambda kv: -sum(kv[1]))
            if calls and (u + s) / calls * 1e6 >= 5
        },
    }


async def _client(args: argparse.Namespace) -> dict[str, Any]:
    make = local_ingest.log_request
    raw = [make(args.batch, seed) for seed in range(8)]
    bodies = raw if args.identity else [gzip.compress(body, 6) for body in raw]
    flag = b"\x00" if args.identity else b"\x01"
    tally = local_ingest.Tally()
    per_exporter = args.calls // args.concurrency
    state = SimpleNamespace(host="127.0.0.1", grpc_port=args.port, http_port=args.port)

    async def one() -> None:
        if args.protocol == "grpc":
            messages = [flag + len(b).to_bytes(4, "big") + b for b in bodies]
            path = local_ingest.GRPC_METHODS["logs"]
            channel = local_ingest.H2GrpcCall(state.host, state.grpc_port, KEY, path)
            if args.identity:
                channel.headers = [h for h in channel.headers if h[0] != "grpc-encoding"]
            try:
                for turn in range(per_exporter):
                    status, _ = await channel.call(messages[turn % len(messages)])
                    tally.statuses[status] += 1
            finally:
                channel.close()
            return
        import aiohttp

        url = f"http://{state.host}:{state.http_port}/v1/logs"
        headers = {"Content-Type": "application/x-protobuf", "Authorization": KEY}
        if not args.identity:
            headers["Content-Encoding"] = "gzip"
        async with aiohttp.ClientSession() as session:
            for turn in range(per_exporter):
                async with session.post(url, data=bodies[turn % 8], headers=headers) as answer:
                    await answer.read()
                    tally.statuses[str(answer.status)] += 1

    await asyncio.gather(*(one() for _ in range(args.concurrency)))
    ok = tally.statuses.get("OK", 0) + tally.statuses.get("200", 0)
    return {"ok": ok, "statuses": dict(tally.statuses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=("http", "grpc"), default="grpc")
    parser.add_argument("--calls", type=int, default=800)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--grpc-option",
        type=lambda text: tuple(text.split("=", 1)),
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra grpc server option (channel argument), e.g. grpc.max_concurrent_streams=8",
    )
    parser.add_argument(
        "--identity", action="store_true", help="bodies uncompressed (default: gzip, level 6)"
    )
    parser.add_argument("--grpc-workers", type=int, default=0, help="the gRPC pool's size")
    parser.add_argument("--switch-interval", type=float, default=0.0, help="sys.setswitchinterval")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        print(json.dumps(asyncio.run(_client(args))))
        return
    print(json.dumps(serve(args)))


if __name__ == "__main__":
    main()
