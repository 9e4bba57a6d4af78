"""uWSGI: master + 2 processes, with and without lazy-apps / enable-threads, agent and hook.

uWSGI forks without running Python's at-fork hooks (unless ``py-call-uwsgi-fork-hooks``), so
these runs check that the export threads are restarted in every worker, that each worker has
its own identity, and that stopping takes seconds, not the 30-60 s of a thread join timeout.
Stop signals: SIGINT and SIGQUIT stop uWSGI; SIGTERM only with ``--die-on-term`` (otherwise
uWSGI 2.0 reloads on SIGTERM).  All three kill the workers at once, and uWSGI skips Python's exit
handlers in a worker that is still inside a request (it answers the client before it has
finished the request), so those runs let the workers go idle first (``SETTLE``); the graceful
shutdown (master FIFO ``q``) flushes even a worker that is busy when it is asked to stop.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from prefork.harness import BIN, EXAMPLES, Server, free_port, record, server_env
from prefork.outcome import assert_complete, snapshot, wait_complete
from prefork.runner import AGENT, BUFFER_UNTIL_STOP, run_http

UWSGI = shutil.which("uwsgi", path=str(BIN)) or shutil.which("uwsgi")
pytestmark = pytest.mark.skipif(
    UWSGI is None, reason="uwsgi is not installed: run `bash .ci/services.sh` (builds it with gcc)"
)
HOOK = ["--import", "uwsgi_postfork"]
SETTLE = 0.5
# Recycled workers make uWSGI's master sleep 2 s before a respawn ("worker respawning too
# fast"); a stop signal during that sleep is a uWSGI race: the master kills the workers it
# has, then finishes the respawn, and waits for the new worker, which was never told to stop
# (a clean-clone CI run hung 60 s on it). Settling past the sleep keeps the stop deterministic.
SETTLE_AFTER_RESPAWN = 2.5
REQUESTS = 20


def uwsgi(*extra: str, agent: bool = True) -> Callable[[int], Sequence[str]]:
    def argv(port: int) -> Sequence[str]:
        base = [
            str(UWSGI),
            "--master",
            "--processes",
            "2",
            "--http-socket",
            f"127.0.0.1:{port}",
            "--chdir",
            str(EXAMPLES),
            "--pythonpath",
            str(EXAMPLES),
            "--module",
            "wsgi_app:application",
            "--need-app",
            "--disable-logging",
            *extra,
        ]
        return [AGENT, *base] if agent else base

    return argv


@pytest.mark.parametrize(
    ("extra", "sig", "buffered"),
    [
        pytest.param([], signal.SIGINT, True, id="default-SIGINT"),
        pytest.param(["--lazy-apps"], signal.SIGQUIT, True, id="lazy-apps-SIGQUIT"),
        pytest.param(
            ["--enable-threads", "--die-on-term"], signal.SIGTERM, True, id="threads-SIGTERM"
        ),
        pytest.param(["--lazy-apps", "--enable-threads"], signal.SIGINT, False, id="lazy-threads"),
        pytest.param(["--py-call-uwsgi-fork-hooks"], signal.SIGINT, False, id="fork-hooks"),
    ],
)
def test_agent_without_hook(
    receiver, ping_url, extra: list[str], sig: signal.Signals, buffered: bool
) -> None:
    name = f"uwsgi agent {' '.join(extra)} {sig.name}{' buffered' if buffered else ''}"
    out = run_http(
        receiver,
        ping_url,
        name,
        uwsgi(*extra),
        stop_signal=sig,
        buffered=buffered,
        settle=SETTLE,
    )
    assert_complete(out)
    assert out.stop_seconds is not None and out.stop_seconds < 10


@pytest.mark.parametrize(
    ("agent", "extra"),
    [
        pytest.param(False, [], id="hook"),
        pytest.param(False, ["--lazy-apps"], id="hook-lazy-apps"),
        pytest.param(True, [], id="hook+agent"),
    ],
)
def test_postfork_hook(receiver, ping_url, agent: bool, extra: list[str]) -> None:
    """configure_opentelemetry() in a @postfork function (S6), alone or under the agent."""
    name = f"uwsgi {'hook+agent' if agent else 'hook'} {' '.join(extra)}"
    out = run_http(
        receiver,
        ping_url,
        name,
        uwsgi(*HOOK, *extra, agent=agent),
        stop_signal=signal.SIGINT,
        settle=SETTLE,
    )
    assert_complete(out)
    assert out.stop_seconds is not None and out.stop_seconds < 10


def test_max_requests_recycling_loses_nothing(receiver, ping_url) -> None:
    """Workers recycled after 4 requests: each old worker flushes on its way out."""
    out = run_http(
        receiver,
        ping_url,
        "uwsgi agent max-requests=4",
        uwsgi("--max-requests", "4", "--min-worker-lifetime", "0"),
        requests=40,
        stop_signal=signal.SIGINT,
        settle=SETTLE_AFTER_RESPAWN,
    )
    assert_complete(out)
    assert len(out.worker_pids) >= 8


def test_graceful_shutdown_flushes_a_busy_worker(receiver, ping_url, tmp_path) -> None:
    """``q`` on the master FIFO: the worker finishes its request, then exits through Python's
    exit handlers; everything it buffered (60 s intervals) arrives, the last request too."""
    rec, sink = receiver
    fifo = tmp_path / "master.fifo"
    port = free_port()
    argv = uwsgi("--master-fifo", str(fifo))(port)
    env = server_env(rec, ping_url, "uwsgi-graceful", **BUFFER_UNTIL_STOP)
    with Server(list(argv), env, port) as srv:
        srv.start()
        srv.wait_workers(2)
        pids = {int(a["pid"]) for a in srv.drive([f"/work/{i}" for i in range(REQUESTS)])}
        slow = threading.Thread(target=srv.get, args=("/health?sleep=1.5",), daemon=True)
        slow.start()
        time.sleep(0.5)  # the slow request is now inside a worker
        stop_seconds = srv.stop(trigger=lambda: fifo.write_text("q"), timeout=30)
        slow.join(5)
        master = srv.pid
    wait_complete(sink, REQUESTS, timeout=3)
    out = snapshot(sink, REQUESTS, pids, master)
    out.stop_seconds = stop_seconds
    in_flight = [r for r in out.spans if "/health" in r["SpanName"] and r["SpanKind"] == "Server"]
    record("uwsgi agent graceful q (busy worker)", **out.summary(), health_spans=len(in_flight))
    assert_complete(out)
    assert any(
        r["SpanAttributes"]
        .get("url.query", r["SpanAttributes"].get("http.target", ""))
        .find("sleep=1.5")
        >= 0
        for r in in_flight
    ), "the request in flight at the stop was not exported"
    assert stop_seconds < 10


HOOK_APP = "uwsgi_hook_app.py"  # a @postfork hook calling configure_opentelemetry(), then Flask
REPORTED = ["--enable-threads"]  # the reported command's threading option


def reported_command(
    *variant: str, threads: Sequence[str] = REPORTED
) -> Callable[[int], Sequence[str]]:
    """The reported command: the agent, uWSGI's ``--http`` router, the hook in the app file."""

    def argv(port: int) -> Sequence[str]:
        return [
            AGENT,
            str(UWSGI),
            "--http",
            f"127.0.0.1:{port}",
            "--master",
            "--processes",
            "2",
            "--wsgi-file",
            HOOK_APP,
            *threads,
            "--die-on-term",
            "--disable-logging",
            *variant,
        ]

    return argv


@pytest.mark.parametrize(
    ("variant", "threads"),
    [
        pytest.param([], REPORTED, id="reported"),
        pytest.param(["--lazy-apps"], REPORTED, id="lazy-apps"),
        pytest.param([], [], id="no-enable-threads"),
        pytest.param([], ["--threads", "4"], id="threads-4"),
    ],
)
def test_agent_with_hook_in_app_file(
    receiver, ping_url, variant: list[str], threads: list[str]
) -> None:
    """``opentelemetry-instrument uwsgi --http ... --wsgi-file app.py`` where app.py starts with
    the documented ``@postfork`` hook: every request arrives once, while the workers run."""
    requests = 90
    out = run_http(
        receiver,
        ping_url,
        f"uwsgi agent+hook-in-app {' '.join(threads + variant)}",
        reported_command(*variant, threads=threads),
        requests=requests,
        stop_signal=signal.SIGTERM,
        env={"PYTHONPATH": str(EXAMPLES)},
        settle=SETTLE,
    )
    assert out.notes["spans_before_stop"] == requests, "exported only at the stop (or never)"
    assert_complete(out)
    log = Path(out.notes["server_log"]).read_text(errors="replace")
    assert "conflicting metrics identities" not in log
    assert "dropped" not in log and "dropping" not in log, log[-3000:]
    assert out.stop_seconds is not None and out.stop_seconds < 10
