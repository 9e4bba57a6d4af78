"""The store's memory and merge tuning: pages given back, heaps purged, merge settings set."""

from __future__ import annotations

import mmap
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from hyperdx.local.resident import (
    HeapTrimmer,
    file_rss_bytes,
    page_out_library,
    page_out_mapped_files,
    rss_bytes,
)
from hyperdx.local.store import Store

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_PAGEOUT")


def _mapping_rss_kb(suffix: str) -> int:
    """Resident kB of this process's mappings of the file ending in ``suffix`` (smaps)."""
    total, current = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
            current = len(fields) >= 6 and fields[-1].endswith(suffix)
        elif current and fields[0] == "Rss:":
            total += int(fields[1])
    return total


@linux_only
def test_read_only_pages_are_given_back_and_still_read_the_same(tmp_path: Path) -> None:
    data = bytes(range(256)) * (16 << 12)  # 16 MiB
    path = tmp_path / "library-like.bin"
    path.write_bytes(data)
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        assert view[:] == data  # touch every page
        before = _mapping_rss_kb("library-like.bin")
        advised = page_out_library("library-like.bin")
        after = _mapping_rss_kb("library-like.bin")
        assert advised == len(data)
        assert before >= 15 * 1024, before
        assert after < before // 2, (before, after)
        assert view[:] == data  # faulted back from the file, unchanged


@linux_only
def test_every_read_only_file_mapping_is_given_back_writable_ones_kept(tmp_path: Path) -> None:
    data = bytes(range(256)) * (8 << 12)  # 8 MiB
    shared, private = tmp_path / "some-library.so", tmp_path / "relocated-data.bin"
    shared.write_bytes(data)
    private.write_bytes(b"\0" * (1 << 20))
    with (
        shared.open("rb") as fh,
        mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view,
        private.open("rb") as fh2,
        mmap.mmap(fh2.fileno(), 0, access=mmap.ACCESS_COPY) as dirty,
    ):
        assert view[:] == data
        dirty[:5] = b"dirty"
        before = _mapping_rss_kb("some-library.so")
        advised = page_out_mapped_files()
        assert advised >= len(data), advised  # this file and the process's libraries
        assert _mapping_rss_kb("some-library.so") < before // 2, before
        assert view[:] == data
        assert dirty[:5] == b"dirty"  # a private change is never dropped


@linux_only
def test_c_heap_bound_is_accepted_by_glibc() -> None:
    import subprocess

    # in a child: the setting is process-wide and meant for the server process only
    code = "from hyperdx.local.resident import bound_c_heap; print(bound_c_heap())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out


@linux_only
def test_writable_mappings_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "private-copy.bin"
    path.write_bytes(b"\0" * (1 << 20))
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY) as view:
        view[:5] = b"dirty"  # a private change that exists nowhere else
        assert page_out_library("private-copy.bin") == 0
        assert view[:5] == b"dirty"
    assert page_out_library("no-such-file.so") == 0


def test_heap_trimmer_purges_at_most_once_per_interval() -> None:
    calls: list[int] = []
    trimmer = HeapTrimmer(lambda: calls.append(1), interval=1.0)
    assert trimmer.maybe_trim(100.0) is True
    assert trimmer.maybe_trim(100.5) is False
    assert trimmer.maybe_trim(101.0) is True
    assert len(calls) == 2


def test_heap_trimmer_pages_out_at_most_once_per_page_out_interval() -> None:
    purges: list[float] = []
    page_outs: list[int] = []
    trimmer = HeapTrimmer(
        lambda: purges.append(1),
        interval=0.25,
        page_out=lambda: page_outs.append(1),
        page_out_interval=5.0,
    )
    assert trimmer.maybe_trim(100.0) is True  # the first trim starts the page-out clock
    assert page_outs == []
    for now in (100.25, 102.0, 104.75):
        assert trimmer.maybe_trim(now) is True
    assert page_outs == []
    assert trimmer.maybe_trim(105.0) is True
    assert page_outs == [1]
    assert trimmer.maybe_trim(105.1) is False  # within the purge interval: nothing at all
    assert trimmer.maybe_trim(109.0) is True
    assert page_outs == [1]
    assert trimmer.maybe_trim(110.0) is True
    assert page_outs == [1, 1]
    assert len(purges) == 7


def test_heap_trimmer_pages_out_sooner_while_file_pages_exceed_the_limit() -> None:
    page_outs: list[float] = []
    resident = {"bytes": 200 << 20}
    now = {"t": 0.0}

    def page_out() -> None:
        page_outs.append(now["t"])
        resident["bytes"] = 30 << 20  # what a page-out leaves

    trimmer = HeapTrimmer(
        lambda: None,
        interval=0.25,
        page_out=page_out,
        page_out_interval=5.0,
        file_rss_limit=64 << 20,
        page_out_gap=1.0,
        file_rss=lambda: resident["bytes"],
    )
    for t in (100.0, 100.5, 100.75, 101.0, 101.5, 102.0, 103.0, 106.0):
        now["t"] = t
        trimmer.maybe_trim(t)
        if t == 101.5:
            resident["bytes"] = 100 << 20  # faulted back in under load
    # 100.0 starts the clock; 101.0: over the limit after the gap; 102.0 over it again;
    # 103.0 under it (within the interval); 106.0 the interval's own page-out (5 s after 102)
    assert page_outs == [101.0, 102.0], page_outs
    now["t"] = 107.0
    trimmer.maybe_trim(107.0)
    assert page_outs == [101.0, 102.0, 107.0]


def test_heap_trimmer_purges_at_every_call_while_over_the_rss_limit() -> None:
    purges: list[float] = []
    page_outs: list[float] = []
    resident = {"bytes": 100 << 20}
    trimmer = HeapTrimmer(
        lambda: purges.append(1),
        interval=0.25,
        page_out=lambda: page_outs.append(1),
        page_out_interval=5.0,
        rss_limit=200 << 20,
        rss=lambda: resident["bytes"],
    )
    assert trimmer.maybe_trim(100.0) is True  # starts the page-out clock
    assert trimmer.maybe_trim(100.1) is False  # under the limit: once per interval
    resident["bytes"] = 260 << 20  # a load peak
    for now in (100.15, 100.2, 100.3, 100.35):
        assert trimmer.maybe_trim(now) is True  # over it: at every call
    assert page_outs == []  # page-outs keep their own clock
    resident["bytes"] = 180 << 20  # back under: the usual rhythm
    assert trimmer.maybe_trim(100.4) is False
    assert trimmer.maybe_trim(100.6) is True
    assert len(purges) == 6
    assert trimmer.maybe_trim(105.0) is True
    assert page_outs == [1]


@linux_only
def test_rss_bytes_is_at_least_the_file_pages_and_grows_with_touched_memory() -> None:
    before = rss_bytes()
    block = bytearray(32 << 20)
    for i in range(0, len(block), mmap.PAGESIZE):
        block[i] = 1  # touch every page
    after = rss_bytes()
    assert after - before >= 30 << 20, (before, after)
    assert after >= file_rss_bytes() > 0
    assert rss_bytes(Path("/no/statm")) == 0


@linux_only
def test_file_rss_bytes_counts_a_mapped_file_once_faulted_in(tmp_path: Path) -> None:
    path = tmp_path / "mapped.bin"
    path.write_bytes(bytes(range(256)) * (16 << 12))  # 16 MiB
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        before = file_rss_bytes()
        assert sum(view[i + 1] for i in range(0, len(view), mmap.PAGESIZE)) > 0  # fault in
        after = file_rss_bytes()
    assert after - before >= 15 << 20, (before, after)
    assert file_rss_bytes(tmp_path / "no-statm") == 0


@linux_only
def test_heap_trimmer_gives_library_pages_back_again_while_running(tmp_path: Path) -> None:
    data = bytes(range(256)) * (8 << 12)  # 8 MiB
    path = tmp_path / "hot-library.so"
    path.write_bytes(data)
    trimmer = HeapTrimmer(lambda: None, interval=0.0, page_out=page_out_mapped_files)
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        trimmer.maybe_trim(0.0)
        assert view[:] == data  # faulted in after start-up, as chDB's code is under load
        before = _mapping_rss_kb("hot-library.so")
        trimmer.maybe_trim(10.0)
        assert before >= 7 * 1024, before
        assert _mapping_rss_kb("hot-library.so") < before // 2, before
        assert view[:] == data


def test_store_runs_at_most_two_merges_at_once_and_still_merges(tmp_path: Path) -> None:
    import json
    import subprocess

    # chDB's server settings come from the process's first session: a fresh process, as the
    # `hyperdx local` server is (this test process may have started chDB already)
    code = (
        "import json, sys\n"
        "from hyperdx.local.store import Store\n"
        "with Store.open(sys.argv[1]) as store:\n"
        "    print(json.dumps([store.query(sql).rows for sql in sys.argv[2:]]))\n"
    )
    sqls = [
        "SELECT name, value FROM system.server_settings WHERE name IN "
        "('background_pool_size', 'background_merges_mutations_concurrency_ratio') ORDER BY name",
        # ClickHouse's own limit of merges in progress (threads x ratio; chDB's default 2 x 2)
        "SELECT value FROM system.metrics WHERE metric = 'BackgroundMergesAndMutationsPoolSize'",
    ]
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "data"), *sqls],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    settings, limit = json.loads(out.stdout.strip().splitlines()[-1])
    assert settings == [
        {"name": "background_merges_mutations_concurrency_ratio", "value": "1"},
        {"name": "background_pool_size", "value": "2"},
    ]
    assert limit == [{"value": 2}], limit
    with Store.open(tmp_path / "data") as store:
        # background merges still run: six parts of a table become fewer without OPTIMIZE
        store.query("CREATE TABLE merge_probe (n UInt64) ENGINE = MergeTree ORDER BY n")
        for part in range(6):
            store.query(f"INSERT INTO merge_probe SELECT number + {part} FROM numbers(100)")
        deadline = time.monotonic() + 60
        parts = 6
        while parts >= 6 and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = int(
                store.query(
                    "SELECT count() AS n FROM system.parts WHERE active AND table = 'merge_probe'"
                ).rows[0]["n"]
            )
        assert parts < 6
        assert store.query("SELECT count() AS n FROM merge_probe").rows == [{"n": 600}]


def test_store_tunes_merges_and_caps_caches_without_changing_rows(tmp_path: Path) -> None:
    with Store.open(tmp_path / "data") as store:
        for table in ("otel_logs", "otel_traces"):
            ddl = store.query(f"SHOW CREATE TABLE {table}").rows[0]["statement"]
            assert "merge_selector_base = 30" in ddl, ddl
            assert "vertical_merge_algorithm_min_rows_to_activate = 1" in ddl, ddl
        tables = store.query(
            "SELECT name FROM system.tables WHERE database = 'default' "
            "AND engine LIKE '%MergeTree' ORDER BY name"
        ).rows
        assert len(tables) == 10  # ClickStack's 8 tables and the 2 rollups
        for row in tables:
            ddl = store.query(f"SHOW CREATE TABLE {row['name']}").rows[0]["statement"]
            assert "min_bytes_for_full_part_storage = 10485760" in ddl, ddl
        caps = {
            row["name"]: int(row["value"])
            for row in store.query(
                "SELECT name, value FROM system.server_settings "
                "WHERE name IN ('mark_cache_size', 'primary_index_cache_size')"
            ).rows
        }
        assert caps == {"mark_cache_size": 64 << 20, "primary_index_cache_size": 32 << 20}
        now = int(time.time())  # within ClickStack's 30-day TTL, which OPTIMIZE applies
        rows = [
            {"Timestamp": f"{now}.{n:09d}", "ServiceName": "svc", "Body": f"line {n}"}
            for n in range(3)
        ]
        for _ in range(3):  # three parts, then one merge: the rows come out as written
            store.insert("otel_logs", rows)
        # small parts are packed: one file each instead of ~13 (file creation is the cost)
        storage = store.query(
            "SELECT table, part_storage_type AS s, count() AS n FROM system.parts "
            "WHERE active AND table LIKE 'otel_logs%' GROUP BY table, s ORDER BY table"
        ).rows
        assert storage == [
            {"table": "otel_logs", "s": "Packed", "n": 3},
            {"table": "otel_logs_kv_rollup_15m", "s": "Packed", "n": 3},
        ]
        store.query("OPTIMIZE TABLE otel_logs FINAL")
        stored = store.query("SELECT Body, count() AS n FROM otel_logs GROUP BY Body ORDER BY Body")
        assert stored.rows == [{"Body": f"line {n}", "n": 3} for n in range(3)]
        # a packed part answers text-index searches (the merge built the indexes)
        found = store.query(
            "SELECT count() AS n FROM otel_logs WHERE hasToken(lower(Body), 'line') "
            "SETTINGS force_data_skipping_indices = 'idx_lower_body'"
        )
        assert found.rows == [{"n": 9}]
    # reopening an existing directory applies the settings again (idempotent ALTER)
    with Store.open(tmp_path / "data") as store:
        assert store.query("SELECT count() AS n FROM otel_logs").rows == [{"n": 9}]


def _index_bytes(store: Store, tables: Iterable[str]) -> dict[str, dict[str, int]]:
    """Compressed bytes stored per skip index of each table (0: built for no part)."""
    names = ", ".join(f"'{table}'" for table in tables)
    found: dict[str, dict[str, int]] = {}
    for row in store.query(
        "SELECT table, name, data_compressed_bytes AS b FROM system.data_skipping_indices "
        f"WHERE database = 'default' AND table IN ({names})"
    ).rows:
        found.setdefault(row["table"], {})[row["name"]] = int(row["b"])
    return found


def test_inserts_build_text_indexes_and_leave_the_others_to_merges(tmp_path: Path) -> None:
    """A merge of parts without a text index first builds one per part in temporary files
    (~5x the merge's CPU), while bloom filters and minmax indexes are rebuilt by every merge
    anyway: so inserts build exactly the text indexes."""
    with Store.open(tmp_path / "data") as store:
        store.query("SYSTEM STOP MERGES")
        now = int(time.time())
        store.insert(
            "otel_logs",
            [
                {
                    "Timestamp": f"{now}.{n:09d}",
                    "ServiceName": "svc",
                    "Body": f"Payment declined {n}",
                    "TraceId": f"{n:032x}",
                    "LogAttributes": {"order.id": str(n)},
                }
                for n in range(3)
            ],
        )
        store.insert(
            "otel_traces",
            [
                {
                    "Timestamp": f"{now}.000000000",
                    "TraceId": "1" * 32,
                    "SpanId": "2" * 16,
                    "SpanName": "GET /checkout",
                    "ServiceName": "svc",
                    "SpanAttributes": {"http.route": "/checkout"},
                    "ResourceAttributes": {"host.name": "h1"},
                }
            ],
        )
        store.insert(
            "otel_metrics_sum",
            [{"ServiceName": "svc", "MetricName": "m", "TimeUnix": now, "Value": 1}],
        )
        tables = ("otel_logs", "otel_traces", "otel_metrics_sum", "otel_logs_kv_rollup_15m")
        built = _index_bytes(store, tables)
        text = {
            row["name"]
            for row in store.query(
                "SELECT name FROM system.data_skipping_indices "
                "WHERE database = 'default' AND table = 'otel_traces' AND type = 'text'"
            ).rows
        }
        assert text == {"idx_res_attr_items", "idx_span_attr_items"}
        assert len(built["otel_logs"]) == 8 and all(built["otel_logs"].values()), built
        assert {name for name, size in built["otel_traces"].items() if size} == text, built
        assert not any(built["otel_metrics_sum"].values()), built
        assert not any(built["otel_logs_kv_rollup_15m"].values()), built
        # the unmerged part answers through its text index
        found = store.query(
            "SELECT count() AS n FROM otel_logs WHERE hasToken(lower(Body), 'declined') "
            "SETTINGS force_data_skipping_indices = 'idx_lower_body'"
        )
        assert found.rows == [{"n": 3}]
        # a merge builds the rest (here OPTIMIZE's: one part is merged too)
        store.query("SYSTEM START MERGES")
        for table in ("otel_traces", "otel_metrics_sum"):
            store.query(f"OPTIMIZE TABLE {table} FINAL")
        merged = _index_bytes(store, tables)
        assert all(merged["otel_traces"].values()), merged
        assert all(merged["otel_metrics_sum"].values()), merged


def test_writer_gathers_more_requests_per_insert_under_a_steady_flow() -> None:
    from hyperdx.local.store import _GroupCommit

    inserts: list[list[bytes]] = []
    first_started = threading.Event()
    release_first = threading.Event()

    def stream(
        table: str, payloads: list[bytes], fmt: str = "JSONEachRow", token: str | None = None
    ) -> None:
        inserts.append(list(payloads))
        if len(inserts) == 1:
            first_started.set()
            release_first.wait(10)

    commits = _GroupCommit(stream, max_bytes=1 << 20, linger=2.0)
    threads = [threading.Thread(target=commits.submit, args=("otel_logs", b"a"))]
    threads[0].start()
    assert first_started.wait(10)
    for body in (b"b", b"c"):  # queued while the first insert runs: a steady flow
        threads.append(threading.Thread(target=commits.submit, args=("otel_logs", body)))
        threads[-1].start()
    while len(commits._queue) < 2:
        time.sleep(0.01)
    release_first.set()
    time.sleep(0.3)  # the writer is now lingering for more: this one joins the next insert
    threads.append(threading.Thread(target=commits.submit, args=("otel_logs", b"d")))
    threads[-1].start()
    for thread in threads:
        thread.join(10)
    commits.close()
    assert inserts == [[b"a"], [b"b", b"c", b"d"]]


def test_writer_waits_for_requests_in_flight_after_an_insert_of_several() -> None:
    """An insert that held several requests means a steady flow: the next insert waits for
    the stragglers (a few ms apart) instead of going out with the first of them, and stops
    waiting once none has come for the gap, well before the linger."""
    from hyperdx.local.store import _GroupCommit

    inserts: list[list[bytes]] = []
    first_started = threading.Event()
    release_first = threading.Event()

    def stream(
        table: str, payloads: list[bytes], fmt: str = "JSONEachRow", token: str | None = None
    ) -> None:
        inserts.append(list(payloads))
        if len(inserts) == 1:
            first_started.set()
            release_first.wait(10)

    commits = _GroupCommit(stream, max_bytes=1 << 20, linger=30.0, gap=0.5)
    submit = commits.submit
    threads = [threading.Thread(target=submit, args=("otel_logs", b"a"))]
    threads[0].start()
    assert first_started.wait(10)
    threads += [threading.Thread(target=submit, args=("otel_logs", b)) for b in (b"b", b"c")]
    for thread in threads[1:]:
        thread.start()
    while len(commits._queue) < 2:
        time.sleep(0.01)
    release_first.set()  # [a], then [b, c]: two requests in one insert
    for thread in threads:
        thread.join(10)
    started = time.monotonic()
    later = [threading.Thread(target=submit, args=("otel_logs", b)) for b in (b"d", b"e", b"f")]
    for thread in later:  # arrive 0.1 s apart, well within the 0.5 s gap
        thread.start()
        time.sleep(0.1)
    for thread in later:
        thread.join(10)
    waited = time.monotonic() - started
    commits.close()
    assert inserts == [[b"a"], [b"b", b"c"], [b"d", b"e", b"f"]]
    assert waited < 10  # the gap ended the wait, not the 30 s linger


def test_writer_passes_over_other_tables_to_keep_each_insert_whole() -> None:
    """An app sends logs and spans at once: the requests of one table join its insert even
    when another table's are queued between them, and those then get their own insert."""
    from hyperdx.local.store import _GroupCommit

    inserts: list[tuple[str, list[bytes]]] = []
    first_started = threading.Event()
    release_first = threading.Event()

    def stream(
        table: str, payloads: list[bytes], fmt: str = "JSONEachRow", token: str | None = None
    ) -> None:
        inserts.append((table, list(payloads)))
        if len(inserts) == 1:
            first_started.set()
            release_first.wait(10)

    commits = _GroupCommit(stream, max_bytes=1 << 20, linger=2.0, gap=0.3)
    threads = [threading.Thread(target=commits.submit, args=("otel_logs", b"a"))]
    threads[0].start()
    assert first_started.wait(10)
    queued = [
        ("otel_logs", b"b"),
        ("otel_traces", b"t1"),
        ("otel_logs", b"c"),
        ("otel_traces", b"t2"),
    ]
    for table, body in queued:  # queued in this order while the first insert runs
        threads.append(threading.Thread(target=commits.submit, args=(table, body)))
        threads[-1].start()
        while len(commits._queue) < len(threads) - 1:
            time.sleep(0.005)
    release_first.set()
    for thread in threads:
        thread.join(10)
    commits.close()
    assert inserts == [
        ("otel_logs", [b"a"]),
        ("otel_logs", [b"b", b"c"]),
        ("otel_traces", [b"t1", b"t2"]),
    ]


def test_writer_keeps_formats_apart_and_weighs_native_bytes_toward_the_cap() -> None:
    """Native blocks and JSONEachRow bodies of one table never share an insert, and a
    Native byte counts 1.7 toward the byte cap (the same rows take fewer bytes), so the cap
    bounds rows per insert as before: 2 x 35 JSON bytes fit in 100, 2 x 35 Native do not."""
    from hyperdx.local.store import NATIVE, _GroupCommit

    inserts: list[tuple[str, list[bytes]]] = []
    first_started = threading.Event()
    release_first = threading.Event()

    def stream(
        table: str, payloads: list[bytes], fmt: str = "JSONEachRow", token: str | None = None
    ) -> None:
        inserts.append((fmt, list(payloads)))
        if len(inserts) == 1:
            first_started.set()
            release_first.wait(10)

    commits = _GroupCommit(stream, max_bytes=100, linger=2.0, gap=0.3)
    threads = [threading.Thread(target=commits.submit, args=("otel_logs", b"first"))]
    threads[0].start()
    assert first_started.wait(10)
    queued = [
        (b"n" * 35, NATIVE),
        (b"j" * 35, "JSONEachRow"),
        (b"N" * 35, NATIVE),
        (b"J" * 35, "JSONEachRow"),
    ]
    for body, fmt in queued:  # queued in this order while the first insert runs
        threads.append(threading.Thread(target=commits.submit, args=("otel_logs", body, None, fmt)))
        threads[-1].start()
        while len(commits._queue) < len(threads) - 1:
            time.sleep(0.005)
    release_first.set()
    for thread in threads:
        thread.join(10)
    commits.close()
    assert inserts == [
        ("JSONEachRow", [b"first"]),
        (NATIVE, [b"n" * 35]),  # 35 * 1.7 = 59; with the next one 118 > 100
        ("JSONEachRow", [b"j" * 35, b"J" * 35]),  # 70 <= 100
        (NATIVE, [b"N" * 35]),
    ]


def test_writer_writes_a_lone_request_at_once() -> None:
    from hyperdx.local.store import _GroupCommit

    inserts: list[list[bytes]] = []
    commits = _GroupCommit(
        lambda t, p, f, k: inserts.append(list(p)), max_bytes=1 << 20, linger=30.0
    )
    started = time.monotonic()
    for body in (b"x", b"y"):  # one after the other: never a backlog, never a wait
        commits.submit("otel_logs", body)
    commits.close()
    assert inserts == [[b"x"], [b"y"]]
    assert time.monotonic() - started < 10  # far below one 30 s linger


@linux_only
def test_store_gives_back_chdb_library_pages_and_keeps_answering(tmp_path: Path) -> None:
    with Store.open(tmp_path / "data") as store:
        store.query("SELECT count() FROM otel_logs")
        before = _mapping_rss_kb("_chdb.abi3.so")
        advised = store.release_startup_pages()
        after = _mapping_rss_kb("_chdb.abi3.so")
        assert advised > 100 << 20, advised  # the library's read-only mappings
        assert after < before, (before, after)
        store.insert("otel_logs", [{"Timestamp": f"{int(time.time())}.0", "Body": "after"}])
        assert store.query("SELECT Body FROM otel_logs").rows == [{"Body": "after"}]


def test_chdb_imported_without_arrow_still_stores_and_reads(tmp_path: Path) -> None:
    import subprocess

    # in a child: which modules a process has loaded is process-wide
    code = f"""
import sys
from hyperdx.local.store import Store, import_chdb_without_arrow
assert import_chdb_without_arrow() is True
assert import_chdb_without_arrow() is False  # already imported: nothing to do
with Store.open({str(tmp_path / "data")!r}) as store:
    store.insert("otel_logs", [{{"Timestamp": "1795967157.5", "Body": "no arrow"}}])
    rows = store.query("SELECT Body FROM otel_logs").rows
    arrow = store.read("SELECT Body FROM otel_logs", "ArrowStream").data  # made by chDB itself
print(rows, "pyarrow" in sys.modules, "numpy" in sys.modules, len(arrow) > 0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[{'Body': 'no arrow'}] False False True", out


def test_insert_streams_a_request_to_chdb_while_the_next_is_still_being_mapped() -> None:
    """Under a steady flow the running insert takes each request as it is queued: chDB has
    the first payload (and parses it) before the second request is even submitted, both
    end up in one insert, and neither is answered before that insert finished."""
    from hyperdx.local.store import _GroupCommit

    inserts: list[list[bytes]] = []
    received: list[bytes] = []
    first_in_chdb = threading.Event()
    release_first = threading.Event()

    def stream(
        table: str, payloads: Iterable[bytes], fmt: str = "JSONEachRow", token: str | None = None
    ) -> None:
        for payload in payloads:
            received.append(payload)
            if payload == b"a":
                first_in_chdb.set()
        inserts.append(list(received))
        received.clear()
        if len(inserts) == 1:
            release_first.wait(10)

    commits = _GroupCommit(stream, max_bytes=1 << 20, linger=30.0, gap=5.0)
    submit = commits.submit
    # warm-up: [x], then [y, z] queued meanwhile: an insert of several makes the flow steady
    warm = [threading.Thread(target=submit, args=("otel_logs", b)) for b in (b"x", b"y", b"z")]
    warm[0].start()
    while not inserts:
        time.sleep(0.01)
    for thread in warm[1:]:
        thread.start()
    while len(commits._queue) < 2:
        time.sleep(0.01)
    release_first.set()
    for thread in warm:
        thread.join(10)
    assert inserts == [[b"x"], [b"y", b"z"]]

    done: list[bytes] = []

    def request(body: bytes) -> None:
        submit("otel_logs", body)
        done.append(body)

    first = threading.Thread(target=request, args=(b"a",))
    first.start()
    assert first_in_chdb.wait(10)  # the insert runs with "a" alone in chDB ...
    time.sleep(0.2)  # ("b" is still being mapped, well within the gap)
    assert received == [b"a"] and done == []  # ... and "a" is not answered yet
    second = threading.Thread(target=request, args=(b"b",))
    second.start()
    first.join(10)
    second.join(10)
    commits.close()
    assert inserts[2:] == [[b"a", b"b"]]  # one insert for both
    assert sorted(done) == [b"a", b"b"]


def test_streamed_inserts_store_every_acknowledged_row_exactly_once(tmp_path: Path) -> None:
    """8 writers in lockstep-like waves through the streaming writer into real chDB: every
    row of every returned insert is stored once, and nothing else."""
    acked: list[str] = []
    lock = threading.Lock()
    stamp = f"{int(time.time())}.0"

    def writer(worker: int, store: Store) -> None:
        for wave in range(6):
            bodies = [f"w{worker}-r{wave}-{n}" for n in range(200)]
            rows = [{"Timestamp": stamp, "ServiceName": "stream", "Body": b} for b in bodies]
            assert store.insert("otel_logs", rows) == 200
            with lock:
                acked.extend(bodies)

    with Store.open(tmp_path / "data") as store:
        threads = [threading.Thread(target=writer, args=(n, store)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        stored = store.query(
            "SELECT Body, count() AS n FROM otel_logs WHERE ServiceName = 'stream' GROUP BY Body"
        )
        parts = store.query("SELECT uniqExact(_block_number) AS n FROM otel_logs").rows[0]["n"]
    assert len(acked) == 8 * 6 * 200
    assert {row["Body"]: row["n"] for row in stored.rows} == dict.fromkeys(acked, 1)
    assert int(parts) < 8 * 6  # requests shared inserts


def test_writer_stops_waiting_once_an_insert_holds_as_many_requests_as_recent_rounds() -> None:
    """N exporters, one request each in flight: once the insert holds N (the most a recent
    round saw, counting requests queued while it was written), none can come before it is
    answered, so the writer commits at once instead of waiting out the gap."""
    from hyperdx.local.store import _GroupCommit

    inserts: list[list[bytes]] = []
    first_started = threading.Event()
    release_first = threading.Event()

    def stream(
        table: str, payloads: list[bytes], fmt: str = "JSONEachRow", token: str | None = None
    ) -> None:
        inserts.append(list(payloads))
        if len(inserts) == 1:
            first_started.set()
            release_first.wait(10)

    commits = _GroupCommit(stream, max_bytes=1 << 20, linger=60.0, gap=60.0)
    submit = commits.submit
    threads = [threading.Thread(target=submit, args=("otel_logs", b"a"))]
    threads[0].start()
    assert first_started.wait(10)
    threads += [threading.Thread(target=submit, args=("otel_logs", b)) for b in (b"b", b"c")]
    for thread in threads[1:]:
        thread.start()
    while len(commits._queue) < 2:
        time.sleep(0.01)
    started = time.monotonic()
    release_first.set()  # a round of three: [a] held one, b and c came meanwhile
    while commits._queue:
        time.sleep(0.01)
    time.sleep(0.2)  # the second insert holds b and c and waits for a third
    third = threading.Thread(target=submit, args=("otel_logs", b"d"))
    third.start()
    for thread in [*threads, third]:
        thread.join(20)
    waited = time.monotonic() - started
    commits.close()
    assert inserts == [[b"a"], [b"b", b"c", b"d"]]
    assert waited < 20  # committed when the third joined, not after the 60 s gap
