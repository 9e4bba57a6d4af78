"""Keep ``hyperdx local``'s resident memory to what chDB uses: two measures.

First, give back the pages of chDB's library that only its start-up touched.

``import chdb`` maps a ~530 MB shared library and reads ~310 MB of it into the process
(measured 2026-11-29: RssFile 317 MB before the first query), most of which never runs again.
Those pages are clean copies of the file, so ``madvise(MADV_PAGEOUT)`` on the library's
read-only mappings drops them from this process without losing anything: the kernel faults
back, from the page cache or the file, only what chDB executes afterwards (~60-130 MB under
ingestion and queries). Writable mappings (relocated data, heaps) are never touched. The
kernel skips pages another process maps too (e.g. a second process with the same installed
chDB loaded): those stay resident in both.

Second, :class:`HeapTrimmer` returns the C heap's free pages and, less often, pages out
the library again (see there), and
:func:`bound_c_heap` keeps glibc's malloc from spreading the receiver's short-lived buffers
over many arenas.

Linux only (MADV_PAGEOUT, 5.4+; glibc's malloc_trim and mallopt); elsewhere they do nothing.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

__all__ = [
    "HeapTrimmer",
    "bound_c_heap",
    "file_rss_bytes",
    "page_out_library",
    "page_out_mapped_files",
    "rss_bytes",
]

_MADV_PAGEOUT = 21
_M_ARENA_MAX = -8  # glibc mallopt parameter (malloc.h)
_PAGE_SIZE = mmap.PAGESIZE


def page_out_library(file_suffix: str, maps: Path = Path("/proc/self/maps")) -> int:
    """Page out this process's read-only mappings of the file ending in ``file_suffix``;
    returns the bytes advised (0 where unsupported)."""
    return _page_out(lambda path: path.endswith(file_suffix), maps)


def page_out_mapped_files(maps: Path = Path("/proc/self/maps")) -> int:
    """Page out every read-only file mapping of this process (libraries, their data).

    Beyond chDB's own library, ``import chdb`` loads pyarrow and numpy (~50 MB of library
    pages touched only while they initialise; the server never calls them), and grpcio's
    core. Whatever the process still runs faults back on demand, from the page cache for
    libraries other processes share (libc, libpython), so this costs a few page faults.
    """
    return _page_out(lambda path: path.startswith("/"), maps)


def file_rss_bytes(statm: Path = Path("/proc/self/statm")) -> int:
    """This process's resident file-backed (and shared) bytes: ``statm``'s third field, the
    cheap read (~10 us) of what ``/proc/self/status`` calls RssFile + RssShmem; 0 where
    unsupported."""
    return _statm_bytes(statm, 2)


def rss_bytes(statm: Path = Path("/proc/self/statm")) -> int:
    """This process's resident bytes (VmRSS: anonymous, file and shared), from ``statm``'s
    second field; 0 where unsupported."""
    return _statm_bytes(statm, 1)


def _statm_bytes(statm: Path, field: int) -> int:
    try:
        pages = int(statm.read_text().split()[field])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * _PAGE_SIZE


def _page_out(wanted: Callable[[str], bool], maps: Path) -> int:
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
        if len(fields) < 6 or "w" in fields[1] or not wanted(fields[5]):
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

    ``page_out`` (e.g. :func:`page_out_mapped_files`), at most every ``page_out_interval``
    seconds, gives back the library pages faulted in since: under ingestion with queries,
    chDB's code and read-only data came back to ~120 MB resident, much of it run only now
    and then (query planning, merge set-up, system tables); paged out every 5 s it stayed
    at ~50-75 MB (measured 2026-11-30). What runs all the time faults straight back in.

    ``file_rss_limit``: page out sooner, at most every ``page_out_gap`` seconds, while the
    process's resident file pages (``file_rss``) exceed it. The first seconds of load fault
    in the most library code (insert, merge and query paths set up for the first time):
    ~115-120 MB resident against ~35 MB right after a page-out, which made the peaks at 32
    exporters (measured 2026-11-30, BENCHMARKS.md "Eighth round: local memory").

    ``rss_limit``: while the whole process's resident memory (``rss``) exceeds it, purge at
    every call (the store calls after every insert) instead of every ``interval``. Under full
    load on a fast host (~80k log records/s, an insert every ~0.1 s) chDB's allocator held up
    to ~100-150 MB more than it had allocated between two purges 0.25 s apart, which with
    the file pages of the first seconds of load made peaks of 300-325 MB. Paging out more
    often over the limit as well cost 13-15 % of the throughput (the first seconds' code
    faults back within ~0.5 s of every page-out); purging more often cost little
    (2026-12-01, BENCHMARKS.md "Thirteenth round").
    """

    def __init__(
        self,
        purge: Callable[[], object],
        interval: float = 1.0,
        *,
        page_out: Callable[[], object] | None = None,
        page_out_interval: float = 5.0,
        file_rss_limit: int | None = None,
        page_out_gap: float = 1.0,
        file_rss: Callable[[], int] = file_rss_bytes,
        rss_limit: int | None = None,
        rss: Callable[[], int] = rss_bytes,
    ) -> None:
        self.interval = interval
        self.page_out_interval = page_out_interval
        self.file_rss_limit = file_rss_limit
        self.page_out_gap = page_out_gap
        self._file_rss = file_rss
        self.rss_limit = rss_limit
        self._rss = rss
        self._purge = purge
        self._page_out = page_out
        self._last = 0.0
        self._last_page_out: float | None = None
        self._trim = _malloc_trim()

    def maybe_trim(self, now: float) -> bool:
        """Trim if ``interval`` passed since the last trim (``now``: monotonic seconds), or at
        once while the process's RSS exceeds ``rss_limit``; page out if ``page_out_interval``
        passed since the last page-out (or the first trim), or ``page_out_gap`` did and the
        resident file pages exceed ``file_rss_limit``."""
        pressed = self.rss_limit is not None and self._rss() > self.rss_limit
        if now - self._last < self.interval and not pressed:
            return False
        self._last = now
        self._purge()
        if self._trim is not None:
            self._trim(0)
        if self._page_out is not None:
            if self._last_page_out is None:
                self._last_page_out = now  # start-up paged out already: count from here
            elif self._page_out_due(now - self._last_page_out):
                self._last_page_out = now
                self._page_out()
        return True

    def _page_out_due(self, since: float) -> bool:
        if since >= self.page_out_interval:
            return True
        limit = self.file_rss_limit
        return limit is not None and since >= self.page_out_gap and self._file_rss() > limit


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


def bound_c_heap(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas; True if glibc took it.

    The receiver's worker threads (~50) would each get an arena of their own (glibc allows
    8 per core), each keeping pages of the requests it served (bodies, decoded messages, row
    dicts, JSON payloads of 0.1-0.4 MB) until the next trim. Two arenas let the threads reuse
    each other's freed blocks (chDB allocates with its own jemalloc: unaffected). glibc's
    mmap threshold is left dynamic: pinning it at 128 KiB, so each payload would be unmapped
    on free, cost ~1 us more CPU per log record in page faults (measured 2026-11-29).
    Call it once, early, in a long-running server process only.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas) == 1)
