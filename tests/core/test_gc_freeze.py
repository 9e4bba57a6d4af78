"""Start-up objects are frozen out of full collections (the FastAPI p99 tail), and only then."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scripts import run_script
from support.otlp import running_receiver

REPORT = """
import gc
from opentelemetry import trace
class Cycle:
    pass
a, b = Cycle(), Cycle()
a.other, b.other = b, a
del a, b
with trace.get_tracer("t").start_as_current_span("after-freeze"):
    pass
print("frozen", gc.get_freeze_count())
print("tracked", len(gc.get_objects()))
print("cycle collected", gc.collect() >= 2)
print("enabled", gc.isenabled())
"""


def _frozen_at_start() -> int:
    """What a bare interpreter has frozen already (375 on CPython 3.12.1, 0 elsewhere)."""
    out = subprocess.run(
        [sys.executable, "-c", "import gc; print(gc.get_freeze_count())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def _values(stdout: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        key, _, value = line.rpartition(" ")
        out[key] = value
    return out


def test_agent_freezes_its_start_up_objects_and_still_collects_new_cycles(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        proc = run_script(REPORT, receiver, tmp_path)
        assert proc.returncode == 0, proc.stderr
        [row] = sink.wait_for("otel_traces", where=lambda r: r["SpanName"] == "after-freeze")
    assert row["ServiceName"] == "scripted"
    got = _values(proc.stdout)
    frozen, tracked = int(got["frozen"]), int(got["tracked"])
    # The SDK, the agent and the instrumentations: tens of thousands of objects.
    assert frozen - _frozen_at_start() > 10_000
    # What a full collection still walks is a small part of what it walked before.
    assert tracked < frozen / 4
    assert got["cycle collected"] == "True"
    assert got["enabled"] == "True"


def test_gc_freeze_false_leaves_the_collector_untouched(tmp_path: Path) -> None:
    with running_receiver() as (receiver, _sink):
        proc = run_script(REPORT, receiver, tmp_path, HYPERDX_GC_FREEZE="false")
    got = _values(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    assert int(got["frozen"]) == _frozen_at_start()
    assert int(got["tracked"]) > 10_000


def test_an_app_that_turned_the_collector_off_is_left_alone(tmp_path: Path) -> None:
    code = """
    import gc
    gc.disable()
    from hyperdx.opentelemetry import configure_opentelemetry
    configure_opentelemetry()
    print("frozen", gc.get_freeze_count())
    print("enabled", gc.isenabled())
    """
    with running_receiver() as (receiver, _sink):
        proc = run_script(code, receiver, tmp_path, agent=False)
    got = _values(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    assert got == {"frozen": str(_frozen_at_start()), "enabled": "False"}


def test_a_bad_value_is_named_and_the_default_kept(tmp_path: Path) -> None:
    with running_receiver() as (receiver, _sink):
        proc = run_script(REPORT, receiver, tmp_path, HYPERDX_GC_FREEZE="sometimes")
    assert "HYPERDX_GC_FREEZE='sometimes' is not a boolean" in proc.stderr
    assert int(_values(proc.stdout)["frozen"]) - _frozen_at_start() > 10_000
