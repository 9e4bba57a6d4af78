"""S1/S2: a fresh venv with our package, then `opentelemetry-bootstrap -a install`, gets the
Flask instrumentation (a floating 0.66b2 would leave Flask silently uninstrumented)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from support.apps import ROOT


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]


@pytest.mark.timeout(900)
def test_bootstrap_in_a_fresh_venv_installs_the_flask_instrumentation(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    install = _run([py, "-m", "pip", "install", "-q", str(ROOT), "flask"])
    assert install.returncode == 0, install.stderr[-3000:]
    listed = _run([py, "-m", "pip", "list", "--format=freeze"]).stdout
    assert "setuptools" not in {
        line.split("==")[0].lower() for line in listed.splitlines()
    } or sys.version_info < (3, 12)  # we add no setuptools dependency (venv may seed one <3.12)
    assert "grpcio" not in listed.lower()  # gRPC is an extra
    boot = _run([str(env_dir / "bin" / "opentelemetry-bootstrap"), "-a", "install"])
    assert boot.returncode == 0, boot.stderr[-3000:]
    after = _run([py, "-m", "pip", "list", "--format=freeze"]).stdout.lower()
    assert "opentelemetry-instrumentation-flask==0.66b1" in after, after
    assert "opentelemetry-instrumentation-wsgi==0.66b1" in after
    # and the agent loads our distro and configurator from that venv
    probe = _run(
        [
            str(env_dir / "bin" / "opentelemetry-instrument"),
            py,
            "-c",
            # Whichever server instrumentation is on (lean or contrib), a request gets a span.
            "from opentelemetry import trace; import flask\n"
            "print(type(trace.get_tracer_provider()).__name__)\n"
            "app = flask.Flask('probe')\n"
            "app.get('/p')(lambda: trace.get_current_span().name)\n"
            "print(app.test_client().get('/p').get_data(as_text=True).replace(' ', '_'))",
        ],
        env={
            "OTEL_SERVICE_NAME": "probe",
            "PATH": str(env_dir / "bin"),
            "HYPERDX_SHUTDOWN_TIMEOUT": "0.5",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        },
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["TracerProvider", "GET_/p"]
