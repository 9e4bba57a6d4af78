"""The embedded ClickHouse (chDB) behind `hyperdx local`: the only module that talks to chDB.

A data directory holds chDB's files plus three of ours, side by side with chDB's own
``status`` lock:

- ``hyperdx-local.lock``: flock-ed by the one process that owns the directory, holding its pid
  (chDB allows a single process per directory; the flock lets a second one fail at once with a
  message naming the owner instead of chDB's bare "Cannot lock file").
- ``api-key``: the generated ingestion key (mode 0600), reused across restarts.
- ``hyperdx-local.json``: where the running server listens (written by the server, mode 0600).

``chdb`` is imported lazily so that the base SDK install (without the ``local`` extra) never
pays for it.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

from hyperdx.local.journal import Journal
from hyperdx.local.log_block import LOG_COLUMNS
from hyperdx.local.native import Block
from hyperdx.local.resident import HeapTrimmer, page_out_mapped_files
from hyperdx.local.sinks import SinkUnavailable, commit_deadline
from hyperdx.local.span_block import SPAN_COLUMNS

try:  # part of the `local` extra; the stdlib encoder is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the install
    _orjson = None  # type: ignore[assignment]

DATABASE = "default"
LOCK_FILE = "hyperdx-local.lock"
KEY_FILE = "api-key"
STATE_FILE = "hyperdx-local.json"
#: Where journaled requests wait for their insert (see :mod:`hyperdx.local.journal`).
JOURNAL_DIR = "journal"
#: The insert formats a queued payload can be in.
JSON_EACH_ROW = "JSONEachRow"
NATIVE = "Native"
#: Tables taking Native blocks (see :meth:`Store.insert_block`), with their block columns.
NATIVE_COLUMNS = {"otel_logs": LOG_COLUMNS, "otel_traces": SPAN_COLUMNS}

#: Tables a sink may write to (what the receiver produces), in ClickStack's names.
WRITABLE_TABLES = frozenset(
    {
        "otel_logs",
        "otel_traces",
        "hyperdx_sessions",
        "otel_metrics_gauge",
        "otel_metrics_sum",
        "otel_metrics_histogram",
        "otel_metrics_exponential_histogram",
        "otel_metrics_summary",
    }
)

# Settings applied to every statement through the session path: UTC regardless of the
# process TZ (chDB otherwise parses naive times in local time), and plain JSON numbers for
# 64-bit integers (Duration, counts) so readers need no string-to-int dance.
_SESSION_SETTINGS = "session_timezone=UTC&output_format_json_quote_64bit_integers=0"
# chDB's embedded server starts with ClickHouse's server defaults, sized for a dedicated host:
# caches of up to 5 GiB each (marks, primary index, skip-index marks) and 1-2 GiB for the
# text indexes. They only fill as data is read, but nothing else bounds them, so they get
# caps sized for a local backend (the first session of the process starts the server; the
# read sessions share it).
_SERVER_SETTINGS = "&".join(
    f"{name}={size << 20}"
    for name, size in (
        ("mark_cache_size", 64),
        ("index_mark_cache_size", 32),
        ("primary_index_cache_size", 32),
        ("text_index_tokens_cache_size", 16),
        ("text_index_header_cache_size", 16),
        ("text_index_postings_cache_size", 32),
        ("query_condition_cache_size", 16),
        ("compiled_expression_cache_size", 32),
    )
)
# Background merges: at most two at once. chDB runs them on 2 threads but, by ClickHouse's
# concurrency ratio (2), keeps up to 4 in progress, each holding one block per merged part
# of the column it gathers (a 30-part vertical merge of otel_logs held 66-116 MB in
# ClickHouse's tracker, measured 2026-11-30): 3-4 at once were the peaks over 300 MB. Two
# threads, ratio 1: a large merge and a small one can still run side by side.
_MERGE_POOL_SETTINGS = "background_pool_size=2&background_merges_mutations_concurrency_ratio=1"
# Merges were ~45 % of the server's CPU under ingestion (BENCHMARKS.md "Local ingest",
# 2026-11-29): each group commit is a part of ~2-8k rows, and with ClickHouse's default
# merge_selector_base (5) every row was merged again at each ~5x size step, rebuilding
# otel_logs' 8 text indexes each time (half of a merge's cost). A higher base merges more
# parts at once and so each row fewer times (~25 -> ~15 us of merge CPU per log row), at
# the cost of more parts between merges (tens per day partition; parts_to_delay_insert is
# 1000). Applied with ALTER ... MODIFY
# SETTING, so ClickStack's DDL stays as it is and existing data directories get it too.
_MERGE_SETTINGS = (
    "merge_selector_base = 30, "
    # Vertical merges (sorting key first, then one column at a time) instead of whole rows:
    # a 30-part horizontal merge held one block per part of every column, up to ~250 MB
    # (ClickHouse's MemoryTracking), against ~90 MB vertically, for the same CPU (measured).
    "vertical_merge_algorithm_min_rows_to_activate = 1, "
    "vertical_merge_algorithm_min_columns_to_activate = 1"
)
_MERGE_TUNED_TABLES = ("otel_logs", "otel_traces")
# Parts under 10 MiB (every insert's, and the first merges') are written "packed": one
# data.packed file instead of ~13 (columns, marks, checksums, count, TTL... the 8 text
# indexes add 48 more to a merged part). Creating files was a third of the server's CPU
# under ingestion here (kernel time in ext4's inode allocation, ~11 us per log row, 26
# files per insert with the rollup view's part; 2026-11-30, BENCHMARKS.md "Local ingest,
# sixth round"); packed, ~5 us. The size matches min_bytes_for_wide_part's default, so
# what would be a compact part is packed and large parts keep their usual layout. Every
# MergeTree table of the schema gets it (ALTER ... MODIFY SETTING: ClickStack's DDL as is).
_PART_STORAGE_SETTINGS = "min_bytes_for_full_part_storage = 10485760"
_INSERT_CHUNK_BYTES = 4 << 20
# Cap on one combined insert (~12k log rows, ~0.1-0.3 s): bounds the latency a request can
# wait behind others. A failed insert commits nothing (measured up to 35 MiB with the bad
# row last), so retrying the requests of a failed combined insert one by one never
# duplicates rows.
_GROUP_COMMIT_BYTES = 6 << 20
# Under a steady flow (the previous insert ended with requests waiting), the writer keeps an
# insert open up to this long for more requests, streaming each to chDB as it is queued:
# fewer, larger inserts and parts, and chDB parses the early requests while the later ones
# are still being mapped. It finishes the insert once no request has joined for
# _GROUP_COMMIT_GAP (the requests being mapped have arrived). A lone request is written at
# once.
_GROUP_COMMIT_LINGER = 0.05
_GROUP_COMMIT_GAP = 0.015
# How many recent inserts set the number of requests an insert waits for (see _next).
_RECENT_INSERTS = 8
# Inserts build a table's text indexes (otel_logs' 8, otel_traces' 2) and leave its other
# skip indexes (bloom filters, minmax) to the background merges. A merge recomputes a bloom
# filter or minmax index from the merged rows anyway, so building those at insert too is
# wasted (~40 % of an insert's CPU with every index built, 2026-11-29). A text index is the
# other way round: a merge of parts that have it merges their posting lists, but for each
# source part without it, it first builds a temporary one in 6 files per index (48 files per
# part of otel_logs), which made merges ~5x dearer per row (38 against 7.5 us of CPU, most of
# it the kernel's file creation), for ~4-8 us more per row at insert (2026-11-30, BENCHMARKS.md
# "Ninth round"). A part not merged yet is read without its bloom filters: same answers, a
# scan of that (small, recent) part instead of a lookup.
_INSERT_BUILDS_INDEX_TYPES = frozenset({"text"})
_NO_INDEXES_AT_INSERT = "SETTINGS materialize_skip_indexes_on_insert = 0"
# A Native block carries every column its insert names, in every row: no field is ever
# omitted, so ClickHouse's step that fills a row's omitted fields with their defaults has
# nothing to do, yet planning it cost ~2-4 ms of each insert (~8 %: median of per-round
# ratios 0.92 for 16- and 4,096-row inserts into otel_logs, 2026-11-30, BENCHMARKS.md "Tenth
# round"), at 8 exporters on the path every exporter waits on. The columns the insert does
# not name (otel_logs' 8 materialized ones, otel_traces' 2) are computed either way.
# JSONEachRow rows may omit fields: those inserts keep the step.
_NATIVE_INSERT_SETTINGS = ", input_format_defaults_for_omitted_fields = 0"
# Journaled inserts (the Native ones) carry a deduplication token, so an insert replayed from
# the journal after a crash is dropped by chDB if it had in fact committed (see
# hyperdx.local.journal). A non-replicated MergeTree keeps tokens only with a window, set on
# the tables such an insert writes: the two Native tables and their rollup views' targets,
# which then deduplicate the view's block too. Other inserts say deduplicate_insert =
# 'disable': with a window, ClickHouse would otherwise drop a block equal to a recent one by
# its hash (chDB 26.9 ignores the older insert_deduplicate = 0 there, which this setting
# supersedes).
_DEDUP_TABLES = (
    "otel_logs",
    "otel_traces",
    "otel_logs_kv_rollup_15m",
    "otel_traces_kv_rollup_15m",
)
_DEDUP_WINDOW_SETTINGS = "non_replicated_deduplication_window = 100"
_TOKEN_SETTINGS = (
    ", insert_deduplication_token = '{token}', "
    "deduplicate_blocks_in_dependent_materialized_views = 1"
)
_NO_TOKEN_SETTINGS = ", deduplicate_insert = 'disable'"
# Journaled requests are answered before their insert, so the queue of those not stored
# yet is bounded instead (in the weighted bytes of _GROUP_COMMIT_BYTES): to what the writer
# stores in _ROOM_SECONDS at its measured rate, between _ROOM_MIN and _ROOM_MAX. Measured in
# time, because a query waits for that queue (see _GroupCommit.settle): a fixed 16 MiB took
# 0.5-0.9 s to store on this machine, and queries then took over 1 s at 32 exporters
# (2026-11-30). A request finding it full, before it is decoded, waits up to _ROOM_WAIT for
# the running insert to free room, then is refused (503 / UNAVAILABLE: retry later). Refused
# after mapping instead, 32 exporters lost ~20 % of their throughput to mapping requests
# only to refuse them.
_ROOM_SECONDS = 0.3
_ROOM_MIN = 4 << 20
_ROOM_MAX = 24 << 20
_ROOM_WAIT = 0.5
# A journaled request whose insert fails is tried again (its client was answered already),
# _RETRY_DELAY apart, and dropped with an error in the log after _RETRIES failures.
_RETRIES = 3
_RETRY_DELAY = 0.5
# How long a query waits for the requests journaled before it to be stored (see
# _GroupCommit.settle), so that it sees every row answered before it was asked: up to
# _SETTLE_TIMEOUT (a slow first insert on a busy machine), but only _SETTLE_TIMEOUT_FULL
# while the queue is full (overload): queries stay under ~1 s (answered at most ~0.3 s of
# the writer's work late), which waiting for all of it did not at 32 exporters.
_SETTLE_TIMEOUT = 3.0
_SETTLE_TIMEOUT_FULL = 0.5
_log = logging.getLogger("hyperdx.local")
# How often the writer hands chDB's free allocator pages back (between inserts). Every 0.25 s
# instead of 1 s lowered the anonymous-memory peak under saturation by ~10 MB (8 exporters,
# 2026-11-29 16:10 UTC); one purge costs ~1.7 ms of CPU, so <1 % of a core.
_PURGE_INTERVAL = 0.25
# How often, while ingesting, the library pages chDB faulted back in are given back again
# (see HeapTrimmer): ~120 MB of chDB's library was resident after a minute of ingestion
# with queries, ~50-75 MB of it once paged out every 5 s (2026-11-30, BENCHMARKS.md
# "Seventh round").
_PAGE_OUT_INTERVAL = 5.0
# ... and sooner (at most every second) while more than this of the process's file pages
# are resident: right after a page-out ~30-35 MB are, what ingestion keeps running; in the
# first seconds of load 115-120 MB were, and that made the 32-exporter peaks (2026-11-30,
# BENCHMARKS.md "Eighth round: local memory").
_PAGE_OUT_FILE_RSS = 64 << 20
_PAGE_OUT_GAP = 1.0
# While the whole process holds more than this, the writer purges chDB's allocator after
# every insert rather than every _PURGE_INTERVAL (see HeapTrimmer). At ~75-90k records/s
# (2026-12-01, a fast host) peak RSS was 254-325 MB without it, 240-289 MB with it, for
# 0-12 % fewer records/s (BENCHMARKS.md "Thirteenth round"); 230 MB left peaks of 255-284.
_PURGE_RSS = 200 << 20


def import_chdb_without_arrow() -> bool:
    """Import chDB for a server process, without pyarrow (nor numpy, which pyarrow loads).

    chDB imports pyarrow only for its Arrow/DataFrame Python APIs and runs without it (its
    ``state/sqlitelike.py`` says so); ``hyperdx local`` reads every result as bytes (JSON,
    CSV, ClickHouse's own formats, Arrow included, are produced by chDB itself). Left out,
    they cost ~10 MB less anonymous memory and start-up ~0.1-0.3 s faster (measured
    2026-11-29). Returns False when chDB was already imported or is missing. Call it only
    in a process that uses chDB for ``hyperdx local`` alone: chDB's Arrow APIs stay off in it.
    """
    if "chdb" in sys.modules:
        return False
    blocked = "pyarrow" not in sys.modules
    if blocked:
        sys.modules["pyarrow"] = None  # type: ignore[assignment]  # `import pyarrow` fails
    try:
        import chdb.session  # noqa: F401
    except ImportError:  # not installed: Store.open reports it as before
        return False
    finally:
        if blocked and sys.modules.get("pyarrow", 0) is None:
            del sys.modules["pyarrow"]
    return True


class StoreError(RuntimeError):
    """A chDB statement failed; the message carries chDB's own text."""


class DataDirInUse(StoreError):
    """Another process owns the data directory (chDB allows one process per directory)."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        owner = f"process {pid}" if pid else "another process"
        super().__init__(
            f"data directory {data_dir} is in use by {owner} "
            "(another `hyperdx local`, or a `hyperdx` command reading it); "
            "stop it or pass a different --data-dir"
        )


def default_data_dir() -> Path:
    """``$HYPERDX_LOCAL_DATA_DIR``, else ``$XDG_DATA_HOME/hyperdx/local``, else
    ``~/.local/share/hyperdx/local``."""
    explicit = os.environ.get("HYPERDX_LOCAL_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "hyperdx" / "local"


def data_dir_size(data_dir: Path) -> int:
    """Bytes the files under ``data_dir`` take on disk (allocated blocks, not apparent size)."""
    total = 0
    for root, _dirs, files in os.walk(data_dir):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:  # a part removed by a merge meanwhile
                continue
    return total


def human_size(size: int) -> str:
    """``1536`` -> ``1.5 KiB``: what a person reads in the startup banner."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def schema_statements() -> list[str]:
    """The statements of ``schema.sql`` (separated by lines holding only ``;``)."""
    text = resources.files("hyperdx.local").joinpath("schema.sql").read_text(encoding="utf-8")
    parts = re.split(r"^;[ \t]*$", text, flags=re.MULTILINE)
    out = []
    for part in parts:
        code = "\n".join(
            line for line in part.splitlines() if not line.lstrip().startswith("--")
        ).strip()
        if code:
            out.append(code)
    return out


class OwnerLock:
    """An exclusive, non-blocking flock on ``<data_dir>/hyperdx-local.lock`` holding our pid.

    The kernel drops a flock when its process dies (also on ``kill -9``), so a stale file
    never blocks a restart; the pid inside is only there to name the owner in the error.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        import fcntl

        fh = open(self.path, "a+", encoding="ascii")  # noqa: SIM115 - held while we own the dir
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.seek(0)
            owner = fh.read().strip()
            fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise DataDirInUse(
                    self.path.parent, int(owner) if owner.isdigit() else None
                ) from None
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing drops the flock; the file stays for the next owner
            self._fh = None


@dataclass
class QueryResult:
    """Rows of a query as dicts, plus the column names and ClickHouse types in order."""

    columns: list[tuple[str, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": [{"name": n, "type": t} for n, t in self.columns],
            "rows": self.rows,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> QueryResult:
        return cls(
            columns=[(c["name"], c["type"]) for c in doc.get("columns", [])],
            rows=list(doc.get("rows", [])),
        )


class Store:
    """One owned data directory: a chDB session for queries and one for inserts.

    Two sessions on the same path share chDB's embedded server, and chDB refuses a query on a
    session with an open streaming insert, so inserts and queries each get their own session
    and lock: readers never wait for a long insert.
    """

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._lock = OwnerLock(self.data_dir)
        self._query_lock = threading.Lock()
        self._insert_lock = threading.Lock()
        self._query_session: Any = None
        self._insert_session: Any = None
        self._insert_settings: dict[str, str] = {}
        #: Journaled requests the previous run left unstored, stored by :meth:`open`, per table.
        self.replayed: dict[str, int] = {}
        self._commits = _GroupCommit(
            self._stream, _GROUP_COMMIT_BYTES, _GROUP_COMMIT_LINGER, _GROUP_COMMIT_GAP
        )
        self._heap = HeapTrimmer(
            self._purge_allocator,
            _PURGE_INTERVAL,
            page_out=page_out_mapped_files,
            page_out_interval=_PAGE_OUT_INTERVAL,
            file_rss_limit=_PAGE_OUT_FILE_RSS,
            page_out_gap=_PAGE_OUT_GAP,
            rss_limit=_PURGE_RSS,
        )

    @classmethod
    def open(cls, data_dir: Path | str) -> Store:
        """Own ``data_dir`` (creating it), open chDB in UTC and apply the schema."""
        store = cls(data_dir)
        store._open()
        return store

    def _open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            from chdb.session import Session

            url = f"{self.data_dir}?{_SESSION_SETTINGS}&{_SERVER_SETTINGS}&{_MERGE_POOL_SETTINGS}"
            try:
                self._query_session = Session(url)
            except RuntimeError as exc:
                if "Cannot lock file" in str(exc):
                    raise DataDirInUse(self.data_dir, None) from exc
                raise StoreError(f"cannot open chDB at {self.data_dir}: {exc}") from exc
            self._insert_session = Session(url)
            for statement in schema_statements():
                self._run(statement)
            for table in _MERGE_TUNED_TABLES:
                self._run(f"ALTER TABLE {DATABASE}.{table} MODIFY SETTING {_MERGE_SETTINGS}")
            for table in self._merge_tree_tables():
                self._run(f"ALTER TABLE {DATABASE}.{table} MODIFY SETTING {_PART_STORAGE_SETTINGS}")
            for table in _DEDUP_TABLES:
                self._run(f"ALTER TABLE {DATABASE}.{table} MODIFY SETTING {_DEDUP_WINDOW_SETTINGS}")
            self._insert_settings = self._index_settings()
            self._open_journal()
        except BaseException:
            self.close()
            raise

    def _open_journal(self) -> None:
        """Store what the previous run journaled but did not commit (it was killed), then
        journal from here on. A replayed insert keeps its token: if it had committed after
        all, chDB drops it as a duplicate."""
        journal = Journal(self.data_dir / JOURNAL_DIR)
        for replay in journal.recover():
            token = replay.token or self._commits.new_token()
            try:
                self._stream(replay.table, [e.payload for e in replay.entries], replay.fmt, token)
            except StoreError as exc:
                raise StoreError(
                    f"cannot store the {len(replay.entries)} journaled request(s) for "
                    f"{replay.table} that the previous run left ({exc}); they stay in "
                    f"{journal.directory}: move that directory away to start without them"
                ) from exc
            self.replayed[replay.table] = self.replayed.get(replay.table, 0) + len(replay.entries)
        journal.start()
        self._commits.journal = journal

    def _merge_tree_tables(self) -> list[str]:
        return [
            row["name"]
            for row in self.query(
                f"SELECT name FROM system.tables WHERE database = '{DATABASE}' "
                "AND engine LIKE '%MergeTree' ORDER BY name"
            ).rows
        ]

    def _index_settings(self) -> dict[str, str]:
        """Each table's INSERT settings: build its text indexes and no other skip index, of
        this table or of a view's target table in the insert's pipeline (the exclusion is by
        name; see _INSERT_BUILDS_INDEX_TYPES). Tables without a text index build none."""
        indexes = self.query(
            "SELECT table, name, type FROM system.data_skipping_indices "
            f"WHERE database = '{DATABASE}' ORDER BY table, name"
        ).rows
        built: dict[str, set[str]] = {}
        for index in indexes:
            if index["type"] in _INSERT_BUILDS_INDEX_TYPES:
                built.setdefault(index["table"], set()).add(index["name"])
        every_name = {index["name"] for index in indexes}
        return {
            table: "SETTINGS materialize_skip_indexes_on_insert = 1, "
            f"exclude_materialize_skip_indexes_on_insert = '{','.join(sorted(every_name - names))}'"
            for table, names in built.items()
        }

    def close(self) -> None:
        """Store what is queued, close both sessions and give up the directory. Safe to call
        twice."""
        self._commits.close()
        journal, self._commits.journal = self._commits.journal, None
        if journal is not None:
            journal.close()
        with self._insert_lock, self._query_lock:
            for session in (self._insert_session, self._query_session):
                if session is not None:
                    session.close()
            self._insert_session = self._query_session = None
        readers, self._readers = self._readers, None
        if readers is not None:
            readers.close()
        self._lock.release()

    def release_startup_pages(self) -> int:
        """Page out the library pages that only start-up read: chDB's and those of what
        ``import chdb`` loads (pyarrow, numpy), see :mod:`hyperdx.local.resident`. For a
        long-running process, after the store opened; it applies to the whole process.
        Returns the bytes advised."""
        return page_out_mapped_files()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, sql: str, fmt: str = "JSON", params: Mapping[str, Any] | None = None) -> bytes:
        if self._query_session is None:
            raise StoreError("store is closed")
        with self._query_lock:
            try:
                res = self._query_session.query(sql, fmt, params=dict(params or {}))
            except RuntimeError as exc:
                raise StoreError(str(exc)) from exc
        data: bytes = res.bytes()
        return data

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """Run one statement; ``{name:Type}`` placeholders are bound from ``params``.

        Statements that return no result set (DDL, INSERT) give an empty result. Like
        :meth:`read`, it first waits for the requests answered so far to be stored.
        """
        self._commits.settle()
        raw = self._run(sql, "JSON", params)
        if not raw.strip():
            return QueryResult()
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise StoreError("the statement's result is not JSON: leave out its FORMAT clause")
        return QueryResult(
            columns=[(m["name"], m["type"]) for m in doc.get("meta", [])],
            rows=doc.get("data", []),
        )

    _readers: _ReadPool | None = None  # the read sessions, opened by the first read()

    def read(
        self,
        sql: str,
        fmt: str,
        *,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, str] | None = None,
        database: str | None = None,
        limits: ReadLimits | None = None,
    ) -> ReadResult:
        """Run one statement on a read-only session (``readonly=2``, ``limits`` as session
        settings) and return its output in ``fmt`` (a FORMAT clause in ``sql`` wins).

        Reads use their own small pool of sessions, so a heavy query blocks neither the
        inserts nor :meth:`query` (the CLI's session); chDB releases the GIL while it works.
        ``settings`` and ``database`` apply to this statement only. The caller vets ``sql``
        and ``settings`` (see :mod:`hyperdx.local.sql_guard`).

        It runs once the requests journaled before it are stored (up to a few seconds), so it
        sees every row the receiver answered before it was asked.
        """
        if self._query_session is None:
            raise StoreError("store is closed")
        self._commits.settle()
        with self._query_lock:
            if self._readers is None:
                self._readers = _ReadPool(self.data_dir, limits or ReadLimits())
            pool = self._readers
        return pool.run(sql, fmt, dict(params or {}), dict(settings or {}), database)

    def insert(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        deadline: float | None = None,
    ) -> int:
        """Store ``rows`` (JSONEachRow-ready dicts) in ``table``; committed on return.

        chDB writes the part files before the insert returns, so a ``kill -9`` afterwards
        loses nothing. Inserts are group-committed by one writer thread: each chDB insert
        costs a fixed ~30-50 ms (new part, rollup view) whatever its size, so
        the rows of every request queued while one insert runs go into the next one.

        ``deadline`` (monotonic seconds): if the writer has not started the insert holding
        these rows by then, nothing is stored and :class:`SinkUnavailable` is raised, so a
        client that gave up and retries never gets its rows stored twice.
        """
        if table not in WRITABLE_TABLES:
            raise StoreError(f"table: {table!r} is not a table hyperdx local writes")
        payload, count = encode_rows(table, rows)
        return self.insert_encoded(table, payload, count, deadline=deadline)

    def insert_encoded(
        self,
        table: str,
        payload: bytes,
        count: int,
        *,
        deadline: float | None = None,
        fmt: str = JSON_EACH_ROW,
    ) -> int:
        """:meth:`insert` for rows already encoded by :func:`encode_rows` (or, ``fmt``
        Native, a block of :meth:`insert_block`)."""
        if table not in WRITABLE_TABLES:
            raise StoreError(f"table: {table!r} is not a table hyperdx local writes")
        if fmt not in (JSON_EACH_ROW, NATIVE) or (fmt == NATIVE and table not in NATIVE_COLUMNS):
            raise StoreError(f"format: {fmt!r} is not an insert format of table {table}")
        if not count:
            return 0
        self._commits.submit(table, payload, deadline, fmt)
        # chDB's rows_written also counts the rollup views' rows, so report our own count.
        return count

    def insert_block(self, table: str, block: Block, *, deadline: float | None = None) -> int:
        """:meth:`insert` for rows already encoded as a Native block (about half chDB's
        insert CPU of JSONEachRow), with the columns :data:`NATIVE_COLUMNS` names for
        ``table``. Group-committed with the other blocks of the table.

        Returns once the block is journaled (see :mod:`hyperdx.local.journal`), before its
        insert: the writer stores it next, after a crash the next :meth:`open` does, and
        :meth:`query` and :meth:`read` wait for it. It is never refused: a caller taking
        requests from clients asks :meth:`wait_for_room` first."""
        if NATIVE_COLUMNS.get(table) != block.columns:
            raise StoreError(f"table: {table!r} takes no Native block with these columns")
        return self.insert_encoded(table, block.payload, block.count, deadline=deadline, fmt=NATIVE)

    def wait_for_room(self, deadline: float | None = None) -> bool:
        """Whether the queue of journaled blocks has room for more, waiting up to _ROOM_WAIT
        (and ``deadline``, monotonic) for the running insert to make some; False: refuse
        the request (503, retry later) before decoding it."""
        until = time.monotonic() + _ROOM_WAIT
        return self._commits.wait_for_room(until if deadline is None else min(deadline, until))

    def _stream(
        self,
        table: str,
        payloads: Iterable[bytes],
        fmt: str = JSON_EACH_ROW,
        token: str | None = None,
    ) -> None:
        """One chDB streaming insert of ``payloads`` (each a whole ``fmt`` body) into
        ``table`` (on the writer thread), deduplicated by ``token`` if given."""
        columns = ""
        separator = b"\n"  # between JSONEachRow bodies; Native blocks simply follow
        settings = self._insert_settings.get(table, _NO_INDEXES_AT_INSERT)
        if fmt == NATIVE:
            columns = " (" + ", ".join(f"`{name}`" for name, _ in NATIVE_COLUMNS[table]) + ")"
            separator = b""
            settings += _NATIVE_INSERT_SETTINGS
        settings += _TOKEN_SETTINGS.format(token=token) if token else _NO_TOKEN_SETTINGS
        with self._insert_lock:
            if self._insert_session is None:
                raise StoreError("store is closed")
            try:
                with self._insert_session.send_insert(
                    f"INSERT INTO {DATABASE}.{table}{columns} {settings}",
                    fmt,
                ) as ins:
                    for index, payload in enumerate(payloads):
                        if index and separator:
                            ins.append(separator)
                        for start in range(0, len(payload), _INSERT_CHUNK_BYTES):
                            ins.append(payload[start : start + _INSERT_CHUNK_BYTES])
                    ins.finish()
            except RuntimeError as exc:
                raise StoreError(f"insert into {table} failed: {exc}") from exc
            finally:
                self._heap.maybe_trim(time.monotonic())

    def _purge_allocator(self) -> None:
        """Return chDB's free allocator pages to the kernel (writer thread, insert lock held)."""
        with contextlib.suppress(RuntimeError):  # a build without jemalloc: nothing to purge
            self._insert_session.query("SYSTEM JEMALLOC PURGE", "CSV")


# Tables whose rows hold only strings, integers and lists/maps of them: orjson encodes them
# ~20x faster than the stdlib. Metric rows keep the stdlib, which writes NaN/Infinity as
# ClickHouse reads them (orjson would write null, i.e. 0).
_ORJSON_TABLES = frozenset({"otel_logs", "otel_traces", "hyperdx_sessions"})


def encode_rows(table: str, rows: Iterable[Mapping[str, Any]]) -> tuple[bytes, int]:
    """Rows -> (JSONEachRow body, row count). The body is JSON objects separated by commas
    or newlines, both of which ClickHouse's JSONEachRow reads; bodies join with a newline."""
    items = rows if isinstance(rows, list) else list(rows)
    if not items:
        return b"", 0
    if table in _ORJSON_TABLES and _orjson is not None:
        try:
            return _orjson.dumps(items)[1:-1], len(items)
        except TypeError:  # e.g. a lone surrogate: the stdlib escapes what orjson refuses
            pass
    lines = [json.dumps(row, separators=(",", ":")) for row in items]
    return "\n".join(lines).encode("utf-8"), len(items)


# A Native block holds the same log rows in ~1/1.7 of the JSONEachRow bytes (bench spans:
# 1/1.71 too, 2026-11-30), so its bytes count 1.7x toward _GROUP_COMMIT_BYTES: the cap
# means the rows it meant (~9k bench log rows). Tried 2.4x (~6.4k rows, what inserts from
# 32 exporters held with JSONEachRow): the peak RSS at 32 exporters stayed 312-316 MB
# (1.7x: 305-319; with packed parts off, 299-307: it follows the throughput, i.e. the
# merges) while CPU per record rose (2026-11-30 02:05-02:15 UTC).
_FORMAT_WEIGHT = {JSON_EACH_ROW: 1.0, NATIVE: 1.7}


class _Pending:
    """One queued payload. Its caller waits on its own ``finished`` lock (held until the
    writer is done with it), not on the queue's condition: one wake-up per request instead of
    every waiting caller woken by every submit and every commit (~5 % of the receiver's GIL
    time at 8 exporters went to those wake-ups, 2026-11-30)."""

    __slots__ = (
        "attempts",
        "behind",
        "deadline",
        "done",
        "error",
        "finished",
        "fmt",
        "payload",
        "seq",
        "size",
        "table",
    )

    def __init__(self, table: str, payload: bytes, deadline: float | None, fmt: str) -> None:
        self.table = table
        self.fmt = fmt
        self.payload = payload
        self.size = int(len(payload) * _FORMAT_WEIGHT.get(fmt, 1.0))  # toward max_bytes
        self.deadline = deadline
        self.behind = False  # queued while the writer was busy: only then can it be late
        self.seq: int | None = None  # journaled: answered already, stored by the writer
        self.attempts = 0  # failed inserts of a journaled item
        self.done = False
        self.error: BaseException | None = None
        self.finished = threading.Lock()
        self.finished.acquire()  # released once, by finish()

    def finish(self) -> None:
        """Answer the caller (writer thread, ``_cond`` held): at most once."""
        if not self.done:
            self.done = True
            self.finished.release()


class _GroupCommit:
    """One writer thread drains a queue of payloads: each round is one insert into the table
    of the first queued payload, fed the payloads of that table as they are queued (up to
    ``max_bytes``, see :meth:`_next`); payloads whose deadline passed are dropped (their
    callers get SinkUnavailable: nothing stored). Callers are answered once the insert is
    committed. If a combined insert fails, its payloads are retried one by one so a bad
    request fails alone.

    With a :attr:`journal`, Native payloads are journaled instead and their callers answered
    at once (see :mod:`hyperdx.local.journal`): the queue of those not stored yet is bounded
    (to ``room_seconds`` of the writer's work: :meth:`wait_for_room` tells the receiver to
    refuse a request before decoding it), their inserts carry a deduplication token recorded
    in the journal, a failed one is tried again, and :meth:`settle` lets a query wait until
    what was answered before it is stored.

    A dedicated writer (rather than a caller leading) bounds every caller's wait to the
    rounds ahead of it: a leader would keep writing other callers' rows while its own caller
    waits."""

    def __init__(
        self,
        stream: Callable[[str, Iterable[bytes], str, str | None], None],
        max_bytes: int,
        linger: float = 0.0,
        gap: float | None = None,
        room_seconds: float = _ROOM_SECONDS,
    ) -> None:
        self._stream = stream
        self._max_bytes = max_bytes
        self._linger = linger
        self._gap = linger if gap is None else gap
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # the writer waits on it
        self._settled = threading.Condition(lock)  # callers waiting for room, queries
        self._queue: deque[_Pending] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = False
        self.journal: Journal | None = None
        self._room_seconds = room_seconds
        self._room = float(_ROOM_MIN)
        self._rate = 0.0  # weighted bytes/s the writer stores, a moving average
        self._boot = uuid.uuid4().hex[:16]  # tokens unique across runs of the same directory
        self._token_ids = itertools.count(1)
        self._unsettled: dict[int, int] = {}  # journaled seq -> weighted bytes, in seq order
        self._unsettled_bytes = 0
        self._last_seq = 0

    def new_token(self) -> str:
        """A deduplication token no other insert of this directory has."""
        return f"{self._boot}-{next(self._token_ids)}"

    def submit(
        self,
        table: str,
        payload: bytes,
        deadline: float | None = None,
        fmt: str = JSON_EACH_ROW,
    ) -> None:
        item = _Pending(table, payload, deadline, fmt)
        journal = self.journal if fmt == NATIVE else None
        with self._cond:
            if self._closed:
                raise StoreError("store is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="hyperdx-local-writer", daemon=True
                )
                self._thread.start()
            if journal is not None:
                # under the lock: the queue stays in journal order
                item.seq = self._last_seq = journal.append(table, fmt, payload)
                self._unsettled[item.seq] = item.size
                self._unsettled_bytes += item.size
            item.behind = self._busy or bool(self._queue)
            self._queue.append(item)
            self._cond.notify()  # only the writer waits on _cond
        if journal is not None:
            return  # on disk: the writer stores it
        item.finished.acquire()
        if item.error is not None:
            raise item.error

    def wait_for_room(self, until: float) -> bool:
        """Wait until the journaled queue holds less than its room, up to ``until``
        (monotonic); False if it is still full. Asked before a request is decoded, so a
        refusal costs no decoding or mapping; a request then journaled is never refused, so
        the queue can pass its room by the requests being mapped (bounded by admission)."""
        with self._cond:
            while self._unsettled_bytes >= self._room:
                if self._closed:
                    raise StoreError("store is closed")
                left = until - time.monotonic()
                if left <= 0:
                    return False
                self._settled.wait(left)
        return True

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until every request journaled so far is stored (or dropped), up to
        ``timeout`` seconds (default: _SETTLE_TIMEOUT, or _SETTLE_TIMEOUT_FULL while the
        queue is full); False if some still are not."""
        with self._cond:
            if timeout is None:
                full = self._unsettled_bytes >= self._room
                timeout = _SETTLE_TIMEOUT_FULL if full else _SETTLE_TIMEOUT
            target = self._last_seq
            until = time.monotonic() + timeout
            while self._unsettled and next(iter(self._unsettled)) <= target:
                left = until - time.monotonic()
                if left <= 0:
                    return False
                self._settled.wait(left)
        return True

    def close(self) -> None:
        """Write what is queued, then stop the writer. Safe to call twice."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        # A steady flow: the last insert ended with requests waiting, or held several
        # (others are then likely being mapped and arrive within milliseconds).
        steady = False
        recent: deque[int] = deque(maxlen=_RECENT_INSERTS)  # requests per recent round
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                self._busy = True
                first = self._queue.popleft()
            batch: list[_Pending] = []
            finished = False
            retry = False
            try:
                self._round(first, batch, steady, max(recent, default=0))
                finished = True
            finally:
                with self._cond:
                    for item in batch:
                        if not finished and item.error is None:  # never report success
                            item.error = StoreError(f"insert into {item.table} was not performed")
                        if item.seq is None:
                            item.finish()
                        else:
                            retry |= self._journaled_done(item)
                    self._busy = False
                    steady = bool(self._queue) or len(batch) > 1
                    # the requests it held, and those that came too late to join it
                    recent.append(len(batch) + len(self._queue))
            if retry:
                time.sleep(_RETRY_DELAY)

    def _journaled_done(self, item: _Pending) -> bool:
        """Settle a journaled item after its insert (``_cond`` held): stored, or queued again
        after a failure (True), or dropped after _RETRIES failures, with an error logged.
        A failure while the store closes leaves the item in the journal, for the next open."""
        assert item.seq is not None and self.journal is not None
        if item.error is not None and not self._closed:
            item.attempts += 1
            if item.attempts < _RETRIES:
                item.error = None
                self._queue.appendleft(item)
                return True
            _log.error(
                "dropping a journaled request for %s after %d failed inserts: %s",
                item.table,
                item.attempts,
                item.error,
            )
            self.journal.drop([item.seq])
        self._unsettled_bytes -= self._unsettled.pop(item.seq, 0)
        self._settled.notify_all()
        return False

    def _round(self, first: _Pending, batch: list[_Pending], steady: bool, full: int) -> None:
        """One insert into ``first.table`` in ``first.fmt``, streamed: each payload is handed
        to chDB as soon as its request is queued, so chDB parses it (on its own threads, GIL
        released) while the next requests are still being mapped; only writing the part
        waits for the last.
        ``batch`` collects every item taken (appended, or refused as late); ``full``: the
        most requests a recent insert held (see :meth:`_next`)."""
        table = first.table
        fmt = first.fmt
        written: list[_Pending] = []
        round_start = time.monotonic()
        journal = self.journal if first.seq is not None else None
        token = self.new_token() if journal is not None else None

        def feed() -> Iterator[bytes]:
            item: _Pending | None = first
            size = 0
            while item is not None:
                batch.append(item)
                if self._late(item):
                    with self._cond:
                        item.finish()  # answered now: its rows were never sent
                else:
                    written.append(item)
                    size += item.size
                    yield item.payload
                with self._cond:
                    item = self._next(table, fmt, size, steady, round_start, len(batch) >= full)
            if journal is not None and token is not None:  # fed: before chDB finishes it
                journal.intent(token, _seqs(written))

        payloads = feed()
        opening = next(payloads, None)  # None: every request taken was late
        if opening is None:
            return
        try:
            self._stream(table, itertools.chain((opening,), payloads), fmt, token)
        except Exception as exc:
            if len(written) == 1:
                written[0].error = exc
                return
            # A failed insert commits nothing: retry one by one so a bad request fails alone.
            for item in written:
                try:
                    self._insert_alone(item, journal)
                except Exception as single:
                    item.error = single
            return
        if journal is not None and token is not None:
            journal.commit(token, _seqs(written))
            self._measure(sum(item.size for item in written), time.monotonic() - round_start)

    def _insert_alone(self, item: _Pending, journal: Journal | None) -> None:
        """Insert one item by itself; a journaled one under a token of its own, recorded
        like a round's (intent before, commit after)."""
        token = None
        if journal is not None:
            token = self.new_token()
            journal.intent(token, _seqs([item]))
        self._stream(item.table, [item.payload], item.fmt, token)
        if journal is not None and token is not None:
            journal.commit(token, _seqs([item]))

    def _measure(self, size: int, seconds: float) -> None:
        """Fold one journaled insert (``size`` weighted bytes stored in ``seconds``) into the
        writer's rate, and size the journaled queue's room from it."""
        if seconds <= 0:
            return
        rate = size / seconds
        self._rate = rate if not self._rate else 0.7 * self._rate + 0.3 * rate
        room = self._rate * self._room_seconds
        self._room = min(float(_ROOM_MAX), max(float(_ROOM_MIN), room))

    def _late(self, item: _Pending) -> bool:
        """Refuse ``item`` (SinkUnavailable, nothing stored) if it waited behind other inserts
        past its deadline: a lone request on a slow machine is written at once (refusing it
        would only make the client resend it)."""
        now = time.monotonic()
        if item.seq is not None:  # answered already: never dropped
            return False
        if item.behind and item.deadline is not None and now > item.deadline:
            item.error = SinkUnavailable(
                f"the store fell {now - item.deadline:.2f}s behind; nothing stored"
            )
            return True
        return False

    def _next(
        self, table: str, fmt: str, size: int, steady: bool, since: float, full: bool = False
    ) -> _Pending | None:
        """The next request for the running insert (``_cond`` held), or None to finish it.

        Under a steady flow the writer waits, until ``since`` + linger, for the requests
        still being mapped, and stops once none has joined for ``gap`` seconds (the byte
        cap ends the insert too). Requests for other tables (or formats) queued in between
        are passed over, so an app sending all three signals still gets large inserts, and
        end the insert once none of this table is left to take. Each insert has a large
        fixed CPU cost (~15-20 ms: a new part plus the rollup view's, half of it creating
        their ~26 files), so the more requests per insert the less CPU per row: 1 request
        42 us per log row, 8 requests 12, 16 requests 10 (measured 2026-11-29), and every
        part saved is one less for the merges. Streaming makes the wait cheap: chDB parses
        what has joined meanwhile. A lone request (no steady flow) is written at once.

        ``full``: the insert already holds as many requests as the most a recent round saw
        (the requests of its insert plus those queued by the time it was committed). Then
        the writer waits no longer: with N exporters each sending one request at a time,
        all N are in this insert and none can come before it is answered (the gap was
        ~15 ms of every ~80 ms round at 8 exporters). A request queued meanwhile raises the
        count for the next rounds, so a growing load still grows the inserts."""
        last = time.monotonic()  # the previous request joined just now
        while True:
            if self._queue:
                for index, item in enumerate(self._queue):
                    if item.table == table and item.fmt == fmt:
                        if size + item.size > self._max_bytes:
                            return None  # the next insert's
                        del self._queue[index]
                        return item
                return None  # only other tables' requests wait: let them go next
            if self._closed or not steady or self._linger <= 0 or full:
                return None
            now = time.monotonic()
            wake = min(since + self._linger, last + self._gap)
            if now >= wake:
                return None
            self._cond.wait(wake - now)


def _seqs(items: Iterable[_Pending]) -> list[int]:
    """The journal sequence numbers of journaled ``items``."""
    return [item.seq for item in items if item.seq is not None]


class ChdbSink:
    """The receiver's :class:`~hyperdx.local.sinks.Sink` over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Encode, then empty ``rows`` (freeing the dicts while the insert waits its turn:
        under load that is most of the receiver's memory), then store."""
        payload, count = encode_rows(table, rows)
        rows.clear()
        self.store.insert_encoded(table, payload, count, deadline=commit_deadline())

    def wait_for_room(self, deadline: float | None = None) -> bool:
        """See :meth:`Store.wait_for_room`: asked by the receiver before decoding."""
        return self.store.wait_for_room(deadline)

    def write_block(self, table: str, block: Block) -> None:
        """Store a Native block (see :class:`~hyperdx.local.sinks.BlockSink`)."""
        self.store.insert_block(table, block, deadline=commit_deadline())


@dataclass(frozen=True)
class ReadLimits:
    """Per-statement bounds of the read sessions (ClickHouse setting names)."""

    max_execution_time: int = 30
    max_result_bytes: int = 64 << 20
    sessions: int = 2
    # Half the cores per query: a heavy query leaves the receiver's inserts a core to run on.
    max_threads: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2))

    def as_settings(self) -> dict[str, int]:
        return {
            "max_execution_time": self.max_execution_time,
            "max_result_bytes": self.max_result_bytes,
            "max_threads": self.max_threads,
        }


@dataclass(frozen=True)
class ReadResult:
    """A statement's output bytes plus the counters ClickHouse reports in its summary."""

    data: bytes
    result_rows: int
    rows_read: int  # from storage
    bytes_read: int
    elapsed_s: float


class _ReadSession:
    def __init__(self, url: str) -> None:
        from chdb.session import Session

        self.session = Session(url)
        self.lock = threading.Lock()
        self.changed: dict[str, str] = {}  # setting -> value to restore after the statement
        self.database = DATABASE

    def _set(self, name: str, value: str) -> None:
        literal = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        self.session.query(f"SET {_identifier(name)} = {literal}", "CSV")

    def run(
        self,
        sql: str,
        fmt: str,
        params: dict[str, Any],
        settings: dict[str, str],
        database: str | None,
    ) -> ReadResult:
        with self.lock:
            try:
                if settings:
                    names = ", ".join("'" + n.replace("'", "") + "'" for n in settings)
                    before = self.session.query(
                        f"SELECT name, value FROM system.settings WHERE name IN ({names})",
                        "JSONEachRow",
                    ).bytes()
                    known = {d["name"]: d["value"] for d in map(json.loads, before.splitlines())}
                    for name, value in settings.items():
                        self._set(name, value)  # chDB names an unknown setting itself
                        self.changed.setdefault(name, known.get(name, ""))
                if database and database != self.database:
                    self.session.query(f"USE {_identifier(database)}", "CSV")
                    self.database = database
                res = self.session.query(sql, fmt, params=params)
                return ReadResult(
                    data=res.bytes(),
                    result_rows=int(res.rows_read()),  # chDB's rows_read counts the result
                    rows_read=int(res.storage_rows_read()),
                    bytes_read=int(res.storage_bytes_read()),
                    elapsed_s=float(res.elapsed()),
                )
            except RuntimeError as exc:
                raise StoreError(str(exc)) from exc
            finally:
                self._restore()

    def _restore(self) -> None:
        try:
            for name, value in list(self.changed.items()):
                self._set(name, value)
                del self.changed[name]
            if self.database != DATABASE:
                self.session.query(f"USE {DATABASE}", "CSV")
                self.database = DATABASE
        except RuntimeError:
            pass  # left dirty: _ReadPool replaces a session whose state it cannot restore

    def close(self) -> None:
        with self.lock:
            self.session.close()


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class _ReadPool:
    """A few read-only sessions on the store's directory, handed out one statement at a time."""

    def __init__(self, data_dir: Path, limits: ReadLimits) -> None:
        from urllib.parse import urlencode

        query = urlencode(
            {
                "session_timezone": "UTC",
                "output_format_json_quote_64bit_integers": 1,
                "readonly": 2,
                **limits.as_settings(),
            }
        )
        self._url = f"{data_dir}?{query}"
        self._sessions = [_ReadSession(self._url) for _ in range(max(1, limits.sessions))]
        self._free = list(self._sessions)
        self._cond = threading.Condition()
        self._closed = False

    def run(
        self,
        sql: str,
        fmt: str,
        params: dict[str, Any],
        settings: dict[str, str],
        database: str | None,
    ) -> ReadResult:
        with self._cond:
            while not self._free and not self._closed:
                self._cond.wait()
            if self._closed:
                raise StoreError("store is closed")
            reader = self._free.pop()
        try:
            return reader.run(sql, fmt, params, settings, database)
        finally:
            if reader.changed or reader.database != DATABASE:
                reader.close()
                self._sessions.remove(reader)
                reader = _ReadSession(self._url)
                self._sessions.append(reader)
            with self._cond:
                self._free.append(reader)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for reader in self._sessions:
            reader.close()
