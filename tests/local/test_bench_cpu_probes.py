"""The CPU probes of the ingest benches: ``bench/local_ingest.py``'s ``--rate`` pacing, its
``--name-threads`` start-up and per-thread user/system split, and
``bench/grpc_layer_cost.py`` (the listeners' CPU per call without chDB) end to end."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("h2")

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "local_ingest_bench_probes", BENCH_DIR / "local_ingest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pacer_offers_requests_on_a_fixed_schedule_and_does_not_burst() -> None:
    bench = load_bench()

    async def sends(pacer: object, count: int, work: float = 0.0) -> list[float]:
        marks = []
        for _ in range(count):
            await pacer.wait()  # type: ignore[attr-defined]
            marks.append(time.monotonic())
            if work:
                await asyncio.sleep(work)
        return marks

    pacer = bench.Pacer(0.05)
    first = pacer.next
    marks = asyncio.run(sends(pacer, 6))
    for turn, mark in enumerate(marks):  # each on its slot of the schedule: never early
        assert mark >= first + 0.05 * turn - 0.002, (turn, mark - first)
    assert marks[-1] - first < 0.05 * 5 + 0.2  # and not drifting late
    # a request slower than the interval delays the next only by itself: no catch-up burst
    slow = asyncio.run(sends(bench.Pacer(0.02), 4, work=0.06))
    assert all(b - a >= 0.055 for a, b in zip(slow, slow[1:], strict=False)), slow
    # interval 0 (no --rate) does not wait at all
    start = time.monotonic()
    asyncio.run(sends(bench.Pacer(0.0), 100))
    assert time.monotonic() - start < 0.5


def test_named_threads_start_up_puts_python_names_in_proc(tmp_path: Path) -> None:
    bench = load_bench()
    module = tmp_path / "threads_probe.py"
    module.write_text(
        "import sys, threading\n"
        "from pathlib import Path\n"
        "def show():\n"
        "    tid = threading.get_native_id()\n"
        "    print(Path(f'/proc/self/task/{tid}/comm').read_text().strip(), sys.argv[1:])\n"
        "thread = threading.Thread(target=show, name='hyperdx-grpc_3')\n"
        "thread.start(); thread.join()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", bench._NAMED_THREADS, "threads_probe", "local", "--x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "grpc_3 ['local', '--x']"


def test_thread_cpu_is_split_into_user_and_system_and_grouped_by_pool() -> None:
    bench = load_bench()
    before = {"grpc_0#10": (1.0, 0.5), "grpc_1#11": (2.0, 0.0), "MergeMutate#12": (3.0, 1.0)}
    after = {
        "grpc_0#10": (1.5, 0.6),
        "grpc_1#11": (2.25, 0.0),
        "MergeMutate#12": (3.0, 1.0),  # idle: left out
        "Thread-4 (_serve)#13": (0.25, 0.125),  # new thread: all of it counts
    }
    assert bench.thread_cpu_delta(before, after) == {
        "grpc_*": {"user": 0.75, "sys": 0.1},
        "Thread-* (_serve)": {"user": 0.25, "sys": 0.12},
    }
    own = bench.thread_cpu(os.getpid())
    assert own and all(len(pair) == 2 and min(pair) >= 0 for pair in own.values())


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_layer_cost_bench_counts_the_servers_threads_per_call(protocol: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH_DIR / "grpc_layer_cost.py"),
            "--protocol",
            protocol,
            "--calls",
            "400",
            "--batch",
            "64",
            "--concurrency",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    ok = "OK" if protocol == "grpc" else "200"
    assert result["answers"] == {ok: 400}
    assert result["calls_ok"] == 400
    assert result["server_us_per_call"] > 0
    # the CPU is the serving listener's threads' (10 ms clock ticks: the busiest ones show)
    grpc_threads = {"hyperdx-grpc_*", "Thread-1 (_serve)", "event_engine"}
    http_threads = {"hyperdx-receiver_*", "hyperdx-receiver-http"}
    mine, other = (
        (grpc_threads, http_threads) if protocol == "grpc" else (http_threads, grpc_threads)
    )
    threads = set(result["server_us_per_call_by_thread"])
    assert threads & mine and not threads & other, threads


def test_layer_cost_bench_runs_the_asyncio_listener_probe() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "grpc_layer_cost.py"), "--calls", "400", "--batch", "64"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LAYER_COST_LISTENER": "grpc_aio_listener:AioGrpcListener"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answers"] == {"OK": 400}
    threads = set(result["server_us_per_call_by_thread"])
    assert "grpc-aio-loop" in threads and "Thread-1 (_serve)" not in threads, threads


def test_host_reference_times_the_receivers_log_mapping_per_record() -> None:
    """Every ingest run reports how fast this machine maps log records right now (its
    speed drifts), so runs of different hours compare at a known reference."""
    bench = load_bench()
    small = bench.host_reference(batch=64, rounds=3)
    large = bench.host_reference(batch=512, rounds=3)
    # per record, so a request 8x larger costs about the same per record, and a real
    # mapping (microseconds, not nanoseconds or milliseconds) was timed
    for value in (small, large):
        assert 0.3 < value < 300, value
    assert 0.25 < small / large < 4, (small, large)
