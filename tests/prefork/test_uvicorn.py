"""uvicorn ``--workers`` and ``--reload`` (S7, B3): spawned workers export under the agent.

The product document says these do not work; with opentelemetry-instrumentation >= 0.63b0 the
agent's sitecustomize reaches spawned workers, and each worker configures itself.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence

import pytest

from prefork.harness import BIN
from prefork.outcome import assert_complete
from prefork.runner import AGENT, run_http

UVICORN = str(BIN / "uvicorn")


def uvicorn(*extra: str) -> Callable[[int], Sequence[str]]:
    def argv(port: int) -> Sequence[str]:
        return [AGENT, UVICORN, "asgi_app:app", "--host", "127.0.0.1", "--port", str(port), *extra]

    return argv


@pytest.mark.parametrize(
    ("extra", "workers", "sig"),
    [
        pytest.param(["--workers", "2"], 2, signal.SIGTERM, id="workers-2-SIGTERM"),
        pytest.param(["--reload"], 1, signal.SIGINT, id="reload-SIGINT"),
    ],
)
def test_uvicorn_multiprocess(
    receiver, ping_url, extra: list[str], workers: int, sig: signal.Signals
) -> None:
    name = f"uvicorn agent {' '.join(extra)} {sig.name} buffered"
    out = run_http(
        receiver, ping_url, name, uvicorn(*extra), workers=workers, stop_signal=sig, buffered=True
    )
    assert_complete(out)
    assert out.stop_seconds is not None and out.stop_seconds < 10
