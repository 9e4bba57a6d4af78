"""Keep ``hyperdx local``'s resident memory to what chDB uses: two measures.

First, give back the pages of chDB's library that only its start-up touched.

``import chdb`` maps a ~530 MB shared library and reads ~310 MB of it into the process
(measured 2026-11-29: RssFile 317 MB before the first query), most of which never runs again.
Those pages are clean copies of the file, so ``madvise(MADV_PAGEOUT)`` on the library's
read-only mappings drops them from this process without losing anything: the kernel faults
back, from the page cache or the file, only what chDB executes afterwards (~60-130 MB under
ingestion and queries). Writable mappings (relocated data, heaps) are never touched.

Second, :class:`HeapTrimmer` returns the C heap's free pages (see there).

Linux only (MADV_PAGEOUT, 5.4+; glibc's malloc_trim); elsewhere both do nothing.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

__all__ = ["HeapTrimmer", "page_out_library"]

_MADV_PAGEOUT = 21


def page_out_library(file_suffix: str, maps: Path = Path("/proc/self/maps")) -> int:
    """Page out this process's read-only mappings of the file ending in ``file_suffix``;
    returns the bytes advised (0 where unsupported)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        lines = maps.read_text().splitlines()
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return 0
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    advised = 0
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[5].endswith(file_suffix) or "w" in fields[1]:
            continue
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        if madvise(start, end - start, _MADV_PAGEOUT) == 0:
            advised += end - start
    return advised


class HeapTrimmer:
    """Hands the heaps' free pages back to the kernel at most every ``interval`` seconds.

    chDB's allocator (its own jemalloc) keeps freed pages for reuse: after merges and insert
    bursts the process held ~170-250 MB of anonymous memory while ClickHouse's tracker counted
    ~15-60 MB in use (measured 2026-11-29). ``purge`` (the store runs ``SYSTEM JEMALLOC
    PURGE``) returns jemalloc's dirty pages; ``malloc_trim(0)`` does the same for the C heap
    that Python and the other extension modules use. Called from the writer thread between
    inserts.
    """

    def __init__(self, purge: Callable[[], object], interval: float = 1.0) -> None:
        self.interval = interval
        self._purge = purge
        self._last = 0.0
        self._trim = _malloc_trim()

    def maybe_trim(self, now: float) -> bool:
        """Trim if ``interval`` passed since the last trim (``now``: monotonic seconds)."""
        if now - self._last < self.interval:
            return False
        self._last = now
        self._purge()
        if self._trim is not None:
            self._trim(0)
        return True


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast("Callable[[int], int]", trim)
