"""The insert journal of ``hyperdx local``: a request is answered once its rows are on disk here.

chDB's insert has a large fixed cost and runs on one writer, so answering a request only once
its insert committed makes every exporter wait for the whole insert; at 8 exporters, each with
one request in flight, nothing new arrives while chDB writes the part, and the server idles
for a third of every round (BENCHMARKS.md "Tenth round"). Journaled first, a request is
answered at once and the writer's inserts overlap the next requests.

The journal is append-only segment files under ``<data_dir>/journal``. Records:

- ``D`` data: a sequence number, the table, the insert format and the payload (the encoded
  rows, exactly what the insert is fed);
- ``I`` intent: before an insert is finished, its deduplication token and the sequence
  numbers it holds;
- ``C`` commit: the insert with that token committed;
- ``X`` dropped: entries the store refused for good (logged).

Each record is ``kind, length, crc32`` then its body; a torn tail (a crash mid-write) fails
its CRC and ends the segment: that request was never answered. After a crash, the entries
without a commit are inserted again when the store opens (:meth:`Journal.recover`), those of
an unfinished insert with its own token: if that insert did commit before the crash, chDB's
insert deduplication drops the second copy, so nothing is stored twice. A segment is deleted
once every entry in it is committed.

Written without fsync, like chDB's own parts (ClickHouse's ``fsync_after_insert`` is off): a
journaled request survives the server being killed, not the machine losing power.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Entry", "Journal", "Replay"]

_log = logging.getLogger("hyperdx.local")

_HEADER = struct.Struct("<cII")  # kind, body length, crc32 of the body
_DATA, _INTENT, _COMMIT, _DROP = b"D", b"I", b"C", b"X"
_SEQ = struct.Struct("<Q")
_COUNT = struct.Struct("<I")
_SUFFIX = ".journal"
# A new segment once the active one passes this; an old one goes once all of it is stored.
SEGMENT_BYTES = 32 << 20


@dataclass
class Entry:
    """One journaled request's rows: what :meth:`Journal.append` was given."""

    seq: int
    table: str
    fmt: str
    payload: bytes


@dataclass
class Replay:
    """Entries to insert again, in one insert. ``token``: the deduplication token of the
    insert they were in when the server stopped (None: they never reached one)."""

    token: str | None
    entries: list[Entry] = field(default_factory=list)

    @property
    def table(self) -> str:
        return self.entries[0].table

    @property
    def fmt(self) -> str:
        return self.entries[0].fmt


class Journal:
    """Segments of journaled inserts in ``directory`` (thread-safe appends).

    Open with :meth:`recover` (what a previous run left uncommitted), insert that, then
    :meth:`start` (drops the old segments, opens a fresh one) before the first append.
    """

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._fd = -1
        self._index = 0  # the active segment's number
        self._size = 0
        self._seq = 0
        self._open: dict[int, set[int]] = {}  # each segment -> its entries not yet stored
        self._segment_of: dict[int, int] = {}  # entry -> its segment

    # -- start-up ----------------------------------------------------------------------------

    def _segments(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(_SUFFIX))

    def recover(self) -> list[Replay]:
        """What the previous run journaled but did not commit, as the inserts to run again
        (in journal order; an unfinished insert's entries together, under its token)."""
        data: dict[int, Entry] = {}
        intents: list[tuple[str, list[int]]] = []
        committed: set[str] = set()
        settled: set[int] = set()
        for path in self._segments():
            for kind, body in _records(path.read_bytes()):
                if kind == _DATA:
                    entry = _decode_data(body)
                    data[entry.seq] = entry
                elif kind == _INTENT:
                    intents.append(_decode_intent(body))
                elif kind == _COMMIT:
                    committed.add(body.decode("utf-8"))
                elif kind == _DROP:
                    settled.update(_decode_seqs(body))
        for token, seqs in intents:
            if token in committed:
                settled.update(seqs)
        pending = {seq: entry for seq, entry in data.items() if seq not in settled}
        # An entry in several unfinished inserts (one failed, then it was tried again) goes
        # with the last: only that one can have committed unrecorded.
        replays: list[Replay] = []
        for token, seqs in reversed(intents):
            if token not in committed and seqs and all(seq in pending for seq in seqs):
                replays.insert(0, Replay(token, [pending.pop(seq) for seq in seqs]))
        loose: dict[tuple[str, str], Replay] = {}
        for entry in pending.values():
            loose.setdefault((entry.table, entry.fmt), Replay(None)).entries.append(entry)
        return replays + list(loose.values())

    def start(self) -> None:
        """Delete the segments :meth:`recover` read (their rows are stored now) and open a
        new one."""
        for path in self._segments():
            path.unlink()
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._roll_locked()

    def close(self) -> None:
        """Close the active segment; delete every segment if nothing is left to store."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if not any(self._open.values()):
                for path in self._segments():
                    path.unlink()
                self._open.clear()

    # -- while running -----------------------------------------------------------------------

    def append(self, table: str, fmt: str, payload: bytes) -> int:
        """Journal one request's rows and return its sequence number. Raises OSError (disk
        full...) with nothing journaled that counts: a partial record fails its CRC."""
        name, kind = table.encode("utf-8"), fmt.encode("utf-8")
        with self._lock:
            seq = self._seq + 1
            head = _SEQ.pack(seq) + bytes((len(name),)) + name + bytes((len(kind),)) + kind
            self._write_locked(_DATA, head, payload)
            self._seq = seq
            self._open[self._index].add(seq)
            self._segment_of[seq] = self._index
            if self._size >= self._segment_bytes:
                self._roll_locked()
        return seq

    # The writer's records never raise: failing one (a full disk) must not make the writer
    # redo an insert that committed, nor give up on one. Without its intent, an insert's
    # entries replay after a crash without its token (a crash in that insert could then
    # store them twice); without its commit, they replay under its token (chDB drops them).

    def intent(self, token: str, seqs: Iterable[int]) -> None:
        """Record that the insert ``token`` holds ``seqs`` (before it is finished)."""
        head = bytes((len(token),)) + token.encode("ascii")
        with self._lock:
            self._record_locked(_INTENT, head, _encode_seqs(seqs))

    def commit(self, token: str, seqs: Iterable[int]) -> None:
        """Record that the insert ``token`` committed; its entries are stored."""
        with self._lock:
            self._record_locked(_COMMIT, token.encode("ascii"), b"")
            self._settle_locked(seqs)

    def drop(self, seqs: Iterable[int]) -> None:
        """Record that ``seqs`` will never be stored (the store refused them)."""
        seqs = list(seqs)
        with self._lock:
            self._record_locked(_DROP, b"", _encode_seqs(seqs))
            self._settle_locked(seqs)

    def _record_locked(self, kind: bytes, head: bytes, tail: bytes) -> None:
        try:
            self._write_locked(kind, head, tail)
        except OSError as error:
            _log.warning("could not write to the journal in %s: %s", self.directory, error)

    def _write_locked(self, kind: bytes, head: bytes, tail: bytes) -> None:
        if self._fd < 0:
            raise OSError(f"the journal in {self.directory} is not open")
        size = len(head) + len(tail)
        header = _HEADER.pack(kind, size, zlib.crc32(tail, zlib.crc32(head)))
        parts = [header, head, tail] if tail else [header, head]
        written = os.writev(self._fd, parts)
        if written != len(header) + size:  # a short write on a regular file: disk full
            raise OSError(f"short write to the journal in {self.directory}")
        self._size += written

    def _settle_locked(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            segment = self._segment_of.pop(seq, None)
            if segment is not None:
                self._open[segment].discard(seq)
        self._sweep_locked()

    def _sweep_locked(self) -> None:
        """Delete the oldest segments while all their entries are stored. Oldest first only:
        an insert's intent may sit in a later segment than its entries, and must stay while
        they are not stored."""
        for segment in sorted(self._open):
            if segment == self._index or self._open[segment]:
                return
            del self._open[segment]
            self._path(segment).unlink(missing_ok=True)

    def _roll_locked(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._index += 1
        self._fd = os.open(
            self._path(self._index), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600
        )
        self._open[self._index] = set()
        self._size = 0
        self._sweep_locked()

    def _path(self, index: int) -> Path:
        return self.directory / f"{index:08d}{_SUFFIX}"


def _records(raw: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The records of one segment, up to a torn or corrupt tail."""
    pos = 0
    while pos + _HEADER.size <= len(raw):
        kind, size, crc = _HEADER.unpack_from(raw, pos)
        body = raw[pos + _HEADER.size : pos + _HEADER.size + size]
        if len(body) != size or zlib.crc32(body) != crc:
            return
        yield kind, body
        pos += _HEADER.size + size


def _decode_data(body: bytes) -> Entry:
    (seq,) = _SEQ.unpack_from(body)
    pos = _SEQ.size
    table = body[pos + 1 : pos + 1 + body[pos]].decode("utf-8")
    pos += 1 + body[pos]
    fmt = body[pos + 1 : pos + 1 + body[pos]].decode("utf-8")
    pos += 1 + body[pos]
    return Entry(seq, table, fmt, body[pos:])


def _decode_intent(body: bytes) -> tuple[str, list[int]]:
    token = body[1 : 1 + body[0]].decode("ascii")
    return token, _decode_seqs(body[1 + body[0] :])


def _encode_seqs(seqs: Iterable[int]) -> bytes:
    """A count, then each sequence number: what :func:`_decode_seqs` reads."""
    packed = [_SEQ.pack(seq) for seq in seqs]
    return _COUNT.pack(len(packed)) + b"".join(packed)


def _decode_seqs(body: bytes) -> list[int]:
    (count,) = _COUNT.unpack_from(body)
    return [seq for (seq,) in _SEQ.iter_unpack(body[_COUNT.size : _COUNT.size + 8 * count])]
