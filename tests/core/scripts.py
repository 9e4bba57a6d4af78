"""Run small Python programs under the agent (or plainly) against a running receiver."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from support.apps import BIN, Proc, run
from support.otlp import exporter_env

KEY = "test-ingestion-key"


def run_script(
    code: str,
    receiver: object,
    tmp_path: Path,
    *,
    agent: bool = True,
    timeout: float = 30.0,
    **env: str,
) -> Proc:
    """Write `code` to a file, run it to completion, return the finished process."""
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(code))
    full_env = exporter_env(receiver, api_key=KEY) if receiver is not None else {}  # type: ignore[arg-type]
    full_env["OTEL_SERVICE_NAME"] = "scripted"
    full_env.update(env)
    argv = [sys.executable, str(script)]
    if agent:
        argv = [str(BIN / "opentelemetry-instrument"), *argv]
    with run(argv, full_env, tmp_path, name="program") as proc:
        proc.wait(timeout)
    return proc
