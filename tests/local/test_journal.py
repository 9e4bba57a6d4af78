"""The insert journal: requests are answered once journaled, and nothing is lost or doubled.

The file format and recovery rules are checked on the journal alone; replay, deduplication
and the read barrier with real chDB through :class:`Store`; the queue bound, retries and drops
on the writer with a store that stalls or fails on purpose (those faults cannot be produced
on demand with chDB).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from hyperdx.local import journal as journal_module
from hyperdx.local import store as store_module
from hyperdx.local.journal import Journal
from hyperdx.local.log_block import log_tables
from hyperdx.local.native import Block
from hyperdx.local.store import JOURNAL_DIR, NATIVE, Store, _GroupCommit

NOW = time.time_ns()


def log_block(count: int, tag: str) -> Block:
    records = [
        LogRecord(
            time_unix_nano=NOW + i,
            severity_text="INFO",
            body=AnyValue(string_value=f"{tag} {i}"),
            attributes=[KeyValue(key="tag", value=AnyValue(string_value=tag))],
        )
        for i in range(count)
    ]
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[
                        KeyValue(key="service.name", value=AnyValue(string_value=f"journal-{tag}"))
                    ]
                ),
                scope_logs=[ScopeLogs(log_records=records)],
            )
        ]
    )
    block: Block = log_tables(request)["otel_logs"]
    return block


def count(store: Store, tag: str) -> int:
    sql = f"SELECT count() AS n FROM otel_logs WHERE LogAttributes['tag'] = '{tag}'"
    return int(store.query(sql).rows[0]["n"])


def rollup(store: Store, tag: str) -> int:
    sql = (
        "SELECT sum(count) AS n FROM otel_logs_kv_rollup_15m "
        f"WHERE Key = 'ServiceName' AND Value = 'journal-{tag}'"
    )
    return int(store.query(sql).rows[0]["n"] or 0)


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / JOURNAL_DIR).glob("*.journal"))


# -- the journal alone ---------------------------------------------------------------------


def test_recover_gives_back_what_was_not_committed_and_stops_at_a_torn_tail(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path)
    journal.start()
    stored = journal.append("otel_logs", NATIVE, b"stored")
    unfinished = [journal.append("otel_logs", NATIVE, b"in-insert-%d" % i) for i in range(2)]
    loose = journal.append("otel_traces", NATIVE, b"loose")
    dropped = journal.append("otel_logs", NATIVE, b"refused")
    journal.intent("t1", [stored])
    journal.commit("t1", [stored])
    journal.intent("t2", unfinished)
    journal.drop([dropped])
    segment = sorted(tmp_path.glob("*.journal"))[-1]
    with open(segment, "ab") as fh:  # a request killed mid-write: never answered
        fh.write(b"D\xff\xff\x00\x00half a record")

    replays = Journal(tmp_path).recover()

    assert [(r.token, r.table, [e.payload for e in r.entries]) for r in replays] == [
        ("t2", "otel_logs", [b"in-insert-0", b"in-insert-1"]),
        (None, "otel_traces", [b"loose"]),
    ]
    assert [e.seq for e in replays[0].entries] == unfinished
    assert replays[1].entries[0].seq == loose


def test_an_entry_tried_again_after_a_failed_insert_replays_under_its_last_token(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path)
    journal.start()
    first, second = (journal.append("otel_logs", NATIVE, b"p%d" % i) for i in range(2))
    journal.intent("batch", [first, second])  # failed: tried one by one
    journal.intent("single-1", [first])
    journal.commit("single-1", [first])
    journal.intent("single-2", [second])  # killed before its commit record

    replays = Journal(tmp_path).recover()

    assert [(r.token, [e.payload for e in r.entries]) for r in replays] == [("single-2", [b"p1"])]


def test_segments_go_once_stored_oldest_first(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=64)
    journal.start()
    seqs = [journal.append("otel_logs", NATIVE, b"x" * 100) for _ in range(3)]
    # each append filled a segment: three full ones and the new active one
    assert len(list(tmp_path.glob("*.journal"))) == 4
    journal.intent("late", seqs[1:])
    journal.commit("late", seqs[1:])
    assert len(list(tmp_path.glob("*.journal"))) == 4, "the oldest still holds an entry"
    journal.intent("early", seqs[:1])
    journal.commit("early", seqs[:1])
    assert [p.name for p in tmp_path.glob("*.journal")] == ["00000004.journal"]
    journal.close()
    assert list(tmp_path.glob("*.journal")) == []


# -- with chDB -------------------------------------------------------------------------------


def test_a_query_sees_every_row_answered_before_it(tmp_path: Path) -> None:
    """insert_block returns once journaled; a query right after still counts every row."""
    blocks = [log_block(200, "barrier") for _ in range(12)]
    with Store.open(tmp_path) as store:
        threads = [
            threading.Thread(target=store.insert_block, args=("otel_logs", block))
            for block in blocks
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert count(store, "barrier") == 12 * 200
        assert rollup(store, "barrier") == 12 * 200
    assert segments(tmp_path) == [], "a clean close leaves no journal"


def record(kind: bytes, body: bytes) -> bytes:
    """One journal record as :class:`Journal` writes it."""
    return journal_module._HEADER.pack(kind, len(body), zlib.crc32(body)) + body


def test_after_a_kill_the_journal_is_stored_once_even_if_its_insert_had_committed(
    tmp_path: Path,
) -> None:
    """A kill between chDB committing an insert and the journal recording it: on restart the
    insert is replayed under its token and chDB drops it, the rollup view's rows included.
    A request answered but not yet taken by the writer is stored."""
    with Store.open(tmp_path) as store:
        store.insert_block("otel_logs", log_block(50, "committed"))
        store.query("SELECT 1")  # settles: the insert and its commit record are written
        (segment,) = segments(tmp_path)
        kept = segment.read_bytes()
    assert segments(tmp_path) == [], "a clean close leaves no journal"
    records = list(journal_module._records(kept))
    assert [kind for kind, _ in records] == [b"D", b"I", b"C"]
    loose = log_block(7, "loose").payload
    loose_body = journal_module._SEQ.pack(99) + b"\x09otel_logs\x06Native" + loose
    segment.parent.mkdir(exist_ok=True)
    segment.write_bytes(
        b"".join(record(kind, body) for kind, body in records[:2]) + record(b"D", loose_body)
    )

    with Store.open(tmp_path) as store:
        assert store.replayed == {"otel_logs": 2}
        assert count(store, "committed") == 50
        assert rollup(store, "committed") == 50
        assert count(store, "loose") == 7
        assert rollup(store, "loose") == 7
    assert segments(tmp_path) == []


def test_a_journal_that_cannot_be_stored_stops_the_start_and_stays(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    journal = Journal(tmp_path / JOURNAL_DIR)
    journal.start()
    journal.append("otel_logs", NATIVE, b"not a Native block")
    kept = segments(tmp_path)
    with pytest.raises(store_module.StoreError) as raised:
        Store.open(tmp_path)
    message = str(raised.value)
    assert "1 journaled request(s) for otel_logs" in message
    assert str(tmp_path / JOURNAL_DIR) in message
    assert segments(tmp_path) == kept


# -- the writer's queue, with a store that stalls or fails on purpose ------------------------


class ScriptedStore:
    """A stream callable: blocks while ``gate`` is clear, then takes the payloads and raises
    while ``failures`` last."""

    def __init__(self, failures: int = 0) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.failures = failures
        self.stored: list[tuple[bytes, str | None]] = []

    def __call__(
        self, table: str, payloads: Iterable[bytes], fmt: str, token: str | None = None
    ) -> None:
        self.gate.wait(10)  # before the feed: the insert's intent is written after this
        data = list(payloads)  # fed in full, as chDB would be
        if self.failures:
            self.failures -= 1
            raise store_module.StoreError("Code: 252. DB::Exception: Too many parts")
        self.stored.extend((payload, token) for payload in data)


def writer(tmp_path: Path, stream: ScriptedStore) -> tuple[_GroupCommit, Journal]:
    commits = _GroupCommit(stream, 1 << 20)
    journal = Journal(tmp_path)
    journal.start()
    commits.journal = journal
    return commits, journal


def test_a_full_queue_holds_new_requests_then_refuses_them_until_the_store_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver asks wait_for_room before decoding a request: it waits while the store
    stalls, says no at its deadline (the request is answered 503, nothing journaled), and
    yes once an insert has made room. A request already journaled is never refused."""
    monkeypatch.setattr(store_module, "_ROOM_MIN", 1500)  # weighted: 1.7x the bytes
    stream = ScriptedStore()
    stream.gate.clear()  # the store stalls
    commits, journal = writer(tmp_path, stream)
    assert commits.wait_for_room(time.monotonic())  # empty
    commits.submit("otel_logs", b"a" * 600, None, NATIVE)  # 1020 of 1500
    assert commits.wait_for_room(time.monotonic())
    commits.submit("otel_logs", b"b" * 600, None, NATIVE)  # 2040: over, journaled anyway
    started = time.monotonic()
    assert not commits.wait_for_room(started + 0.5)
    assert 0.45 <= time.monotonic() - started < 1.5
    # a query waits less for a full queue (overload), so it still answers within ~1 s
    started = time.monotonic()
    assert not commits.settle()
    assert store_module._SETTLE_TIMEOUT_FULL - 0.05 <= time.monotonic() - started < 1.5
    answered: list[bool] = []
    waiting = threading.Thread(
        target=lambda: answered.append(commits.wait_for_room(time.monotonic() + 10))
    )
    waiting.start()
    waiting.join(0.5)
    assert waiting.is_alive(), "waits while the store stalls"
    stream.gate.set()
    waiting.join(10)
    assert answered == [True]
    assert commits.settle(10)
    commits.close()
    assert sorted(p for p, _ in stream.stored) == [b"a" * 600, b"b" * 600]


def test_a_failed_journaled_insert_is_tried_again_under_a_new_token(tmp_path: Path) -> None:
    stream = ScriptedStore(failures=1)
    commits, journal = writer(tmp_path, stream)
    commits.submit("otel_logs", b"payload", None, NATIVE)
    assert commits.settle(10)
    commits.close()
    ((payload, token),) = stream.stored
    assert payload == b"payload" and token
    journal.close()
    assert list(tmp_path.glob("*.journal")) == [], "stored: nothing left to replay"


def test_a_journaled_request_failing_every_try_is_dropped_with_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stream = ScriptedStore(failures=99)
    commits, journal = writer(tmp_path, stream)
    with caplog.at_level(logging.ERROR, logger="hyperdx.local"):
        commits.submit("otel_logs", b"payload", None, NATIVE)
        assert commits.settle(10)
    commits.close()
    assert stream.stored == []
    (message,) = [r.getMessage() for r in caplog.records]
    assert "dropping a journaled request for otel_logs after 3 failed inserts" in message
    assert "Too many parts" in message
    assert Journal(tmp_path).recover() == [], "a dropped request is not replayed"


def test_a_journaled_request_failing_while_the_store_closes_stays_for_the_next_open(
    tmp_path: Path,
) -> None:
    stream = ScriptedStore(failures=99)
    stream.gate.clear()
    commits, journal = writer(tmp_path, stream)
    commits.submit("otel_logs", b"payload", None, NATIVE)
    closing = threading.Thread(target=commits.close)
    closing.start()
    while not commits._closed:
        time.sleep(0.01)
    stream.gate.set()  # the insert in progress fails after close() began
    closing.join(10)
    assert not closing.is_alive()
    journal.close()
    replays = Journal(tmp_path).recover()
    assert [[e.payload for e in r.entries] for r in replays] == [[b"payload"]]


def test_a_journal_that_cannot_be_written_after_an_append_stores_each_request_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk while an insert runs (its intent and commit records fail): the insert
    still counts as done, neither tried again nor dropped."""
    stream = ScriptedStore()
    stream.gate.clear()
    commits, journal = writer(tmp_path, stream)
    commits.submit("otel_logs", b"payload", None, NATIVE)
    writable = journal._fd
    journal._fd = os.open(os.devnull, os.O_RDONLY)  # every further write fails (EBADF)
    with caplog.at_level(logging.WARNING, logger="hyperdx.local"):
        stream.gate.set()
        assert commits.settle(10)
        commits.close()
    os.close(journal._fd)
    journal._fd = writable
    assert [payload for payload, _ in stream.stored] == [b"payload"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all("could not write to the journal" in w for w in warnings)
