"""Keep start-up objects out of CPython's full garbage collections.

The agent, the SDK and the instrumentations leave ~40k GC-tracked objects (modules, classes,
functions) that live as long as the process. A full (generation-2) collection walks every
tracked object, so with ours loaded each full pass of a FastAPI worker took 50-78 ms, and
those pauses were the instrumented p99 tail (BENCHMARKS.md). `gc.freeze()` moves the objects
alive now to the permanent generation: later collections skip them, refcounting still frees
them, and pre-fork workers stop dirtying the pages that hold them (copy-on-write). Garbage in
cycles at this moment would never be collected, so the young generations are collected first
(~0.3 ms; a full collection would cost ~10 ms of start-up, for ~20 objects).
"""

from __future__ import annotations

import gc

_done = False


def freeze_startup_objects() -> int:
    """Freeze the objects alive now, once per process; returns how many were frozen."""
    global _done
    if _done or not gc.isenabled():
        # An app that turned the collector off manages it itself; we leave it alone.
        return 0
    _done = True
    gc.collect(1)
    before = gc.get_freeze_count()
    gc.freeze()
    return gc.get_freeze_count() - before
