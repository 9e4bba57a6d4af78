"""Run example apps as real subprocesses and drive them over loopback HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The test process's environment minus any OTEL/HYPERDX settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "HYPERDX_")) and k != "DEBUG"
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Proc:
    """A running subprocess whose output is collected in files (no pipe can fill up)."""

    popen: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path
    exit_seconds: float | None = None
    returncode: int | None = None
    _stopped: bool = field(default=False)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> float:
        """Send `sig`, wait for exit; returns the seconds it took."""
        if self._stopped:
            return self.exit_seconds or 0.0
        self._stopped = True
        start = time.monotonic()
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            self.returncode = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.returncode = self.popen.wait()
        self.exit_seconds = time.monotonic() - start
        return self.exit_seconds

    def wait(self, timeout: float = 30.0) -> int:
        start = time.monotonic()
        self.returncode = self.popen.wait(timeout)
        self.exit_seconds = time.monotonic() - start
        self._stopped = True
        return self.returncode


@contextmanager
def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    tmp_path: Path,
    name: str = "app",
    cwd: Path | None = None,
) -> Iterator[Proc]:
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        popen = subprocess.Popen(
            list(argv), env=base_env(env), stdout=fo, stderr=fe, cwd=str(cwd or ROOT)
        )
    proc = Proc(popen, out, err)
    try:
        yield proc
    finally:
        if popen.poll() is None:
            proc.stop(signal.SIGKILL)


def wait_http(url: str, proc: Proc | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(
                f"process exited early ({proc.popen.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes, float]:
    """GET url; (status, body, seconds). HTTP errors are returned, not raised."""
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read(), time.monotonic() - start
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), time.monotonic() - start
