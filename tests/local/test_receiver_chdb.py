"""The rows the receiver produces are accepted by ClickStack's real schema in chDB, edge cases
included (zero and out-of-range timestamps, NaN, zero ids, every metric table, sessions).

chDB allows one data path per process, so the receiver + store run in a child process that
prints what it read back; this process only sends the requests and checks the answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytest.importorskip("chdb")

CHILD = Path(__file__).with_name("receiver_chdb_child.py")


def test_edge_case_rows_land_in_clickstack_schema(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(CHILD), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["statuses"] == [200, 200, 200]
    seconds = out["T"] // 10**9
    recent = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.123456789")
    late, zero = out["traces"]
    assert zero["ts"] == recent
    assert zero["ev"] == ["1970-01-01 00:00:00.000000000"] and zero["links"] == [""]
    assert zero["SpanAttributes"] == {"nan": "NaN", "SampleRate": "10"}
    assert int(zero["SampleRate"]) == 10
    assert late["ts"] == "2262-04-11 23:47:16.854775807"
    assert (late["SpanKind"], late["StatusCode"], late["TraceId"]) == ("Server", "Error", "01" * 16)
    [log] = out["logs"]
    assert log["ts"] == recent
    assert (log["SeverityText"], log["SeverityNumber"]) == ("warn", 13)
    assert log["LogAttributes"] == {"k\ufffd": "v", "level": "WARN"}
    assert out["sessions"] == [{"Body": "replay", "LogAttributes": {"rr-web.event": "1"}}]
    [gauge] = out["gauge"]
    assert gauge["v"] == "nan" and gauge["t"] == ["0" * 32] and gauge["s"] == ["0" * 16]
    assert int(gauge["time"]) == seconds
    [total] = out["sum"]
    assert (total["Value"], total["IsMonotonic"], total["AggregationTemporality"]) == (7, True, 2)
    [histogram] = out["histogram"]
    assert (int(histogram["Count"]), histogram["Sum"], histogram["Min"]) == (3, 0, 0)
    assert [int(c) for c in histogram["BucketCounts"]] == [1, 2]
    [exp] = out["exp"]
    assert (exp["Scale"], exp["PositiveOffset"]) == (2, -1)
    assert out["summary"] == [{"v": [1.5]}]
