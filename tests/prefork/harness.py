"""Run a real multi-process server as a subprocess, drive it, stop it, and time the stop."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from support.otlp import exporter_env

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "servers"
BIN = Path(sys.executable).parent
RESULTS_FILE = Path(
    os.environ.get("PREFORK_RESULTS", Path(tempfile.gettempdir()) / "hyperdx-prefork-results.jsonl")
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(receiver: Any, ping_url: str, service: str, **extra: str) -> dict[str, str]:
    """Environment for a server under test: fast export to ``receiver``, no inherited OTEL_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HYPERDX_", "DEBUG"))}
    env.update(exporter_env(receiver, api_key=None))
    env.update(
        {
            "OTEL_SERVICE_NAME": service,
            "PING_URL": ping_url,
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def ping_server() -> Iterator[str]:
    """A plain HTTP server the apps call (so each request also makes one client span)."""

    class Ping(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"pong")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ping)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ping"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Server:
    """A server subprocess in its own process group; output goes to a temp file."""

    argv: Sequence[str]
    env: dict[str, str]
    port: int
    cwd: Path = EXAMPLES
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: Path(tempfile.mktemp(suffix=".log")))
    stop_seconds: float | None = None

    def start(
        self, ready_path: str = "/health", timeout: float = 30.0, ready_log: str | None = None
    ) -> Server:
        """Start; ready when ``ready_path`` answers 200 (or ``ready_log`` appears in the log)."""
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            list(self.argv),
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited early ({self.proc.returncode}):\n{self.output()}"
                )
            if ready_log is not None:
                if ready_log in self.output():
                    return self
                time.sleep(0.1)
                continue
            try:
                with urllib.request.urlopen(self.url(ready_path), timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.output()}")

    def wait_workers(self, count: int, timeout: float = 60.0) -> set[int]:
        """Probe until ``count`` distinct workers answered: each has finished booting (and
        configuring telemetry), so a stop signal cannot land in the middle of a boot."""
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < count and time.monotonic() < deadline:
            for answer in self.drive(["/health?sleep=0.2"] * (2 * count), concurrency=2 * count):
                seen.add(int(answer["pid"]))
        if len(seen) < count:
            raise RuntimeError(f"only workers {seen} answered in {timeout}s:\n{self.output()}")
        return seen

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.url(path), timeout=10) as resp:
            body = resp.read()
        try:
            return dict(json.loads(body))
        except ValueError:
            return {"body": body.decode(errors="replace")}

    def drive(self, paths: Iterable[str], concurrency: int = 4) -> list[dict[str, Any]]:
        """Send the requests with bounded concurrency; every one must succeed."""
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(self.get, paths))

    def stop(
        self,
        sig: int = signal.SIGTERM,
        timeout: float = 60.0,
        trigger: Callable[[], object] | None = None,
    ) -> float:
        """Signal the server's main process; time until the whole process group is gone.

        Workers that outlive the master are waited for (they may still be flushing), and
        killed only once ``timeout`` has passed.
        """
        assert self.proc is not None
        started = time.monotonic()
        if trigger is not None:
            trigger()  # e.g. a command on uWSGI's master FIFO instead of a signal
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            raise
        gone = self._wait_group_gone(timeout=max(0.0, timeout - (time.monotonic() - started)))
        self.stop_seconds = time.monotonic() - started
        if not gone:
            raise RuntimeError(f"workers still running {timeout}s after the signal; killed")
        return self.stop_seconds

    def _kill_group(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def _wait_group_gone(self, timeout: float) -> bool:
        """Workers may outlive the master briefly; wait for the process group to empty."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        os.killpg(self.proc.pid, signal.SIGKILL)
        return False

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._kill_group()
        with_log = getattr(self, "_log", None)
        if with_log is not None:
            with_log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record(scenario: str, **values: Any) -> None:
    """Append one measured row (stop time, counts) for the report / README."""
    with RESULTS_FILE.open("a") as fh:
        fh.write(json.dumps({"scenario": scenario, **values}) + "\n")
