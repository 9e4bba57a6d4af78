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

import errno
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

DATABASE = "default"
LOCK_FILE = "hyperdx-local.lock"
KEY_FILE = "api-key"
STATE_FILE = "hyperdx-local.json"

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
_INSERT_CHUNK_BYTES = 4 << 20
# Cap on one combined insert (~30k log rows): bounds the latency a request can wait behind
# others. A failed insert commits nothing (measured up to 35 MiB with the bad row last), so
# retrying the requests of a failed combined insert one by one never duplicates rows.
_GROUP_COMMIT_BYTES = 8 << 20


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
        self._commits = _GroupCommit(self._stream, _GROUP_COMMIT_BYTES)

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

            url = f"{self.data_dir}?{_SESSION_SETTINGS}"
            try:
                self._query_session = Session(url)
            except RuntimeError as exc:
                if "Cannot lock file" in str(exc):
                    raise DataDirInUse(self.data_dir, None) from exc
                raise StoreError(f"cannot open chDB at {self.data_dir}: {exc}") from exc
            self._insert_session = Session(url)
            for statement in schema_statements():
                self._run(statement)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close both sessions and give up the directory. Safe to call twice."""
        with self._insert_lock, self._query_lock:
            for session in (self._insert_session, self._query_session):
                if session is not None:
                    session.close()
            self._insert_session = self._query_session = None
        self._lock.release()

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

        Statements that return no result set (DDL, INSERT) give an empty result.
        """
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

    def insert(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Store ``rows`` (JSONEachRow-ready dicts) in ``table``; committed on return.

        chDB writes the part files before the insert returns, so a ``kill -9`` afterwards
        loses nothing. Concurrent callers are group-committed: each chDB insert costs a fixed
        ~15-30 ms (new part, text indexes, rollup view) whatever its size, so requests that
        arrive while one insert runs are written together by the next one, and each caller
        returns once the insert holding its rows has finished.
        """
        if table not in WRITABLE_TABLES:
            raise StoreError(f"table: {table!r} is not a table hyperdx local writes")
        lines = [json.dumps(row, separators=(",", ":")) for row in rows]
        if not lines:
            return 0
        self._commits.submit(table, ("\n".join(lines) + "\n").encode("utf-8"))
        # chDB's rows_written also counts the rollup views' rows, so report our own count.
        return len(lines)

    def _stream(self, table: str, payloads: list[bytes]) -> None:
        """One chDB streaming insert of ``payloads`` into ``table`` (the group-commit leader)."""
        with self._insert_lock:
            if self._insert_session is None:
                raise StoreError("store is closed")
            try:
                with self._insert_session.send_insert(
                    f"INSERT INTO {DATABASE}.{table}", "JSONEachRow"
                ) as ins:
                    for payload in payloads:
                        for start in range(0, len(payload), _INSERT_CHUNK_BYTES):
                            ins.append(payload[start : start + _INSERT_CHUNK_BYTES])
                    ins.finish()
            except RuntimeError as exc:
                raise StoreError(f"insert into {table} failed: {exc}") from exc


class _Pending:
    __slots__ = ("done", "error", "payload", "table")

    def __init__(self, table: str, payload: bytes) -> None:
        self.table = table
        self.payload = payload
        self.done = False
        self.error: BaseException | None = None


class _GroupCommit:
    """Leader-based group commit: the first caller to find no insert running becomes the
    leader and writes everything queued (one insert per table) until the queue is empty;
    the others wait for the insert that holds their payload. If a combined insert fails,
    its payloads are retried one by one so a bad request fails alone."""

    def __init__(self, stream: Callable[[str, list[bytes]], None], max_bytes: int) -> None:
        self._stream = stream
        self._max_bytes = max_bytes
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._leading = False

    def submit(self, table: str, payload: bytes) -> None:
        item = _Pending(table, payload)
        with self._cond:
            self._queue.append(item)
            while not item.done and self._leading:
                self._cond.wait()
            if not item.done:
                self._leading = True
        if not item.done:
            try:
                self._lead()
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        if not item.done:  # cannot happen unless the leader died mid-way; never report success
            raise StoreError(f"insert into {table} was not performed")

    def _lead(self) -> None:
        while True:
            with self._cond:
                batch: list[_Pending] = []
                rest: list[_Pending] = []
                size = 0
                for item in self._queue:
                    if size + len(item.payload) <= self._max_bytes or not batch:
                        batch.append(item)
                        size += len(item.payload)
                    else:
                        rest.append(item)
                self._queue = rest
            if not batch:
                return
            by_table: dict[str, list[_Pending]] = {}
            for item in batch:
                by_table.setdefault(item.table, []).append(item)
            for table, items in by_table.items():
                self._write(table, items)
            with self._cond:
                for item in batch:
                    item.done = True
                self._cond.notify_all()

    def _write(self, table: str, items: list[_Pending]) -> None:
        # Any failure is handed to the callers whose rows it concerns (each re-raises it).
        try:
            self._stream(table, [item.payload for item in items])
            return
        except Exception as exc:
            if len(items) == 1:
                items[0].error = exc
                return
        for item in items:
            try:
                self._stream(table, [item.payload])
            except Exception as exc:
                item.error = exc


class ChdbSink:
    """The receiver's :class:`~hyperdx.local.sinks.Sink` over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.store.insert(table, rows)
