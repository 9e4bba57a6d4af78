"""Gunicorn: every worker exports every request exactly once, under its own identity.

Covers the documented ``post_fork`` hook without the agent (S5), hook + agent (B1), the agent
alone with sync and gthread workers with and without ``--preload``, the stop signals, and
worker recycling.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence

import pytest

from prefork.harness import BIN, EXAMPLES
from prefork.outcome import assert_complete
from prefork.runner import AGENT, run_http

GUNICORN = str(BIN / "gunicorn")
HOOK = ["-c", str(EXAMPLES / "gunicorn.conf.py")]


def gunicorn(*extra: str, agent: bool = True, workers: int = 2) -> Callable[[int], Sequence[str]]:
    def argv(port: int) -> Sequence[str]:
        base = [GUNICORN, "-w", str(workers), "-b", f"127.0.0.1:{port}", *extra, "wsgi_app:app"]
        return [AGENT, *base] if agent else base

    return argv


@pytest.mark.parametrize(
    ("extra", "sig", "buffered"),
    [
        pytest.param([], signal.SIGTERM, True, id="sync-SIGTERM"),
        pytest.param(["--preload"], signal.SIGINT, True, id="sync-preload-SIGINT"),
        pytest.param(
            ["-k", "gthread", "--threads", "2"], signal.SIGQUIT, True, id="gthread-SIGQUIT"
        ),
        pytest.param(
            ["-k", "gthread", "--threads", "2", "--preload"],
            signal.SIGTERM,
            False,
            id="gthread-preload",
        ),
    ],
)
def test_agent_without_hook(
    receiver, ping_url, extra: list[str], sig: signal.Signals, buffered: bool
) -> None:
    """opentelemetry-instrument alone.  Buffered runs keep everything in the workers until the
    stop (60 s export intervals), so what arrives was flushed by that stop signal."""
    name = f"gunicorn agent {' '.join(extra)} {sig.name}{' buffered' if buffered else ''}"
    out = run_http(receiver, ping_url, name, gunicorn(*extra), stop_signal=sig, buffered=buffered)
    assert_complete(out)
    assert out.stop_seconds is not None and out.stop_seconds < 10


@pytest.mark.parametrize(
    ("agent", "extra"),
    [
        pytest.param(False, [], id="hook"),
        pytest.param(False, ["--preload"], id="hook-preload"),
        pytest.param(True, [], id="hook+agent"),
        pytest.param(True, ["--preload"], id="hook+agent-preload"),
    ],
)
def test_post_fork_hook(receiver, ping_url, agent: bool, extra: list[str]) -> None:
    """configure_opentelemetry() in post_fork: complete telemetry, alone or under the agent."""
    name = f"gunicorn {'hook+agent' if agent else 'hook'} {' '.join(extra)}"
    out = run_http(receiver, ping_url, name, gunicorn(*HOOK, *extra, agent=agent))
    assert_complete(out)


def test_max_requests_1_exports_every_request_once(receiver, ping_url) -> None:
    """A new worker per request (fork after fork from a configured master): 200 requests,
    200 server spans, none duplicated, none lost."""
    out = run_http(
        receiver,
        ping_url,
        "gunicorn max_requests=1",
        gunicorn("--preload", "--max-requests", "1"),
        requests=200,
        concurrency=2,
    )
    assert_complete(out)
    assert len(out.worker_pids) >= 100
