"""The ingest bench's h2 gRPC load client (``bench/local_ingest.py --grpc-client h2``) against
a real ``hyperdx local``: what it counts as acknowledged is what got stored, its requests
larger than HTTP/2's initial 64 KB window get through (flow control), a wrong key is tallied
as grpcio names it, and a RetryInfo trailer (unpadded base64, as grpc sends ``-bin``
metadata) gives the delay the server chose."""

from __future__ import annotations

import asyncio
import base64
import gzip
import importlib.util
import time
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("chdb")
pytest.importorskip("h2")

from google.protobuf.duration_pb2 import Duration  # noqa: E402
from google.rpc.error_details_pb2 import RetryInfo  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "bench" / "local_ingest.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("local_ingest_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_h2_client_acks_exactly_what_is_stored(tmp_path: Path) -> None:
    bench = load_bench()
    proc, state = bench.start_server(tmp_path / "data")
    try:
        tally = bench.Tally()
        small = [gzip.compress(bench.log_request(64, seed), 6) for seed in range(2)]
        big = [gzip.compress(bench.log_request(4096, 7), 6)]
        assert len(big[0]) > 65_535  # more than the initial stream window: must wait for updates
        until = time.monotonic() + 2.0

        async def load() -> None:
            await asyncio.gather(
                bench.h2_grpc_exporter(
                    state.host, state.grpc_port, state.api_key, "logs", small, 64, until, tally
                ),
                bench.h2_grpc_exporter(
                    state.host, state.grpc_port, state.api_key, "logs", big, 4096, until, tally
                ),
            )

        asyncio.run(load())
        assert tally.statuses["OK"] >= 2, tally.statuses
        assert set(tally.statuses) <= {"OK", "UNAVAILABLE"}, tally.statuses
        assert len(tally.accepted_latency) == tally.statuses["OK"]
        rows = bench.query(state, "SELECT count() AS n FROM otel_logs")[0]["n"]
        assert int(rows) == tally.acked > 4096

        refused = bench.Tally()
        asyncio.run(
            bench.h2_grpc_exporter(
                state.host,
                state.grpc_port,
                "wrong-key",
                "logs",
                small,
                64,
                time.monotonic() + 0.3,
                refused,
            )
        )
        assert set(refused.statuses) == {"UNAUTHENTICATED"} and refused.acked == 0
        assert int(bench.query(state, "SELECT count() AS n FROM otel_logs")[0]["n"]) == int(rows)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_retry_info_trailer_gives_the_delay() -> None:
    bench = load_bench()
    info = RetryInfo(retry_delay=Duration(seconds=1, nanos=250_000_000)).SerializeToString()
    unpadded = base64.b64encode(info).decode().rstrip("=")
    status, delay = bench._grpc_answer(
        {":status": "200", "grpc-status": "14", "google.rpc.retryinfo-bin": unpadded}
    )
    assert (status, delay) == ("UNAVAILABLE", 1.25)
    assert bench._grpc_answer({":status": "200", "grpc-status": "8"}) == ("RESOURCE_EXHAUSTED", 1.0)
    assert bench._grpc_answer({":status": "200", "grpc-status": "0"}) == ("OK", 0.0)
    assert bench._grpc_answer({":status": "502"}) == ("HTTP_502", 0.0)
