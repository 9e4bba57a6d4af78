"""The apps, the environment variants, and one server run per (app, variant, mode).

Each run is a real server (gunicorn sync worker or uvicorn) started under
``opentelemetry-instrument`` with the repo's distro, exporting OTLP/HTTP to the suite's
receiver. ``contrib`` sets HYPERDX_SERVER_INSTRUMENTATION=contrib; ``ours`` leaves it unset,
so the default (the lean request path) is what is tested.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from differential.collector import Collected
from differential.traffic import PARALLEL_REQUESTS, REQUESTS, Reply, Req, send
from hyperdx.local.receiver import Receiver

from support.apps import BIN, Proc, free_port, run
from support.otlp import exporter_env

APPS_DIR = Path(__file__).resolve().parent / "apps"
MODES = ("contrib", "ours")
# Apps whose contrib instrumentation is the ASGI middleware (with http send/receive spans).
ASGI_MIDDLEWARE_APPS = frozenset({"fastapi", "starlette", "asgi"})


@dataclass(frozen=True)
class App:
    name: str
    target: str
    server: str  # gunicorn | uvicorn
    excluded_env: str | None  # the framework-specific OTEL_PYTHON_*_EXCLUDED_URLS, if any
    variants: tuple[str, ...] = ("default", "http", "dup_capture_excluded")  # see variant_env


APPS = {
    a.name: a
    for a in (
        App(
            "flask",
            "flask_app:app",
            "gunicorn",
            "OTEL_PYTHON_FLASK_EXCLUDED_URLS",
            ("default", "http", "dup_capture_excluded", "in_code"),  # also without the agent
        ),
        App("django", "django_app:application", "gunicorn", "OTEL_PYTHON_DJANGO_EXCLUDED_URLS"),
        App("wsgi", "wsgi_app:app", "gunicorn", None),
        App(
            "fastapi",
            "fastapi_app:app",
            "uvicorn",
            "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS",
            ("default", "http", "dup_capture_excluded", "in_code"),  # also without the agent
        ),
        # Django's ASGI path, in two variants only (dup covers both attribute sets) to keep
        # the suite's time down.
        App(
            "django_asgi",
            "django_asgi_app:application",
            "uvicorn",
            "OTEL_PYTHON_DJANGO_EXCLUDED_URLS",
            ("default", "dup_capture_excluded"),
        ),
        App("starlette", "starlette_app:app", "uvicorn", "OTEL_PYTHON_STARLETTE_EXCLUDED_URLS"),
        App("asgi", "asgi_app:app", "uvicorn", None),
    )
}

CAPTURE_ENV = {
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": (
        "x-custom-req,x-multi,authorization,cookie,x-api-key,x-big,x-odd,x-empty"
    ),
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": "content-type,allow",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": "authorization,cookie,x-api-.*",
}


def variant_env(variant: str, app: App) -> dict[str, str]:
    """Environment of one variant. ``dup_capture_excluded`` combines three settings so the
    suite stays within its time budget: each changes different attributes."""
    if variant == "default":
        return {}
    if variant == "in_code":  # no agent: the app calls configure_opentelemetry() itself
        return {"DIFF_CONFIGURE_IN_CODE": "1"}
    if variant == "http":
        # Also a propagator list other than the default: no baggage propagation at all.
        return {"OTEL_SEMCONV_STABILITY_OPT_IN": "http", "OTEL_PROPAGATORS": "tracecontext"}
    if variant == "dup_capture_excluded":
        env = {"OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup", **CAPTURE_ENV}
        # The framework-specific list replaces the generic one (contrib's rule), so with both
        # set only /excluded/specific is excluded for frameworks that have their own variable.
        env["OTEL_PYTHON_EXCLUDED_URLS"] = "excluded/generic"
        if app.excluded_env:
            env[app.excluded_env] = "excluded/specific"
        return env
    raise ValueError(f"unknown variant {variant!r}")


@dataclass
class RunResult:
    app: str
    variant: str
    mode: str
    service: str
    port: int
    replies: dict[str, Reply]
    stderr: str
    returncode: int | None


def _argv(app: App, port: int, variant: str) -> list[str]:
    agent = str(BIN / "opentelemetry-instrument")
    return ([] if variant == "in_code" else [agent]) + _server_argv(app, port)


def _server_argv(app: App, port: int) -> list[str]:
    if app.server == "gunicorn":
        return [
            str(BIN / "gunicorn"),
            "-w",
            "1",
            "-k",
            "sync",
            "-b",
            f"127.0.0.1:{port}",
            "--limit-request-field_size",
            "16384",
            "--graceful-timeout",
            "10",
            "--no-control-socket",
            app.target,
        ]
    return [
        str(BIN / "uvicorn"),
        app.target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "10",
    ]


def _env(app: App, variant: str, mode: str, service: str, receiver: Receiver) -> dict[str, str]:
    env = {
        **exporter_env(receiver),
        "OTEL_SERVICE_NAME": service,
        "OTEL_LOGS_EXPORTER": "none",
        "PYTHONPATH": str(APPS_DIR),
        "DJANGO_SETTINGS_MODULE": "django_settings",
        # Same set iteration order in both runs (Werkzeug builds the Allow header from a set).
        "PYTHONHASHSEED": "0",
        **variant_env(variant, app),
    }
    if mode == "contrib":
        env["HYPERDX_SERVER_INSTRUMENTATION"] = "contrib"
    return env


def _wait_listening(proc: Proc, port: int, timeout: float = 60.0) -> None:
    """Wait for the port to accept connections. No HTTP probe: a probe retried after a
    timeout would be counted twice in one run's metrics and once in the other's."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise AssertionError(f"server exited early ({proc.popen.returncode}):\n{proc.stderr}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"port {port} not listening after {timeout}s:\n{proc.stderr}")


def _drive(proc: Proc, port: int) -> dict[str, Reply]:
    _wait_listening(proc, port)
    # One warm-up request, sent once with a long timeout (never retried, so both runs count
    # it exactly once): a worker that imports the app lazily may take long on a busy machine.
    warm = send(port, Req("ready", b"/items/0"), timeout=120)
    assert warm.status == 200, (warm, proc.stderr[-2000:])
    replies = {req.label: send(port, req) for req in REQUESTS}
    with ThreadPoolExecutor(len(PARALLEL_REQUESTS)) as pool:
        sent = {req.label: pool.submit(send, port, req) for req in PARALLEL_REQUESTS}
        replies.update({label: future.result() for label, future in sent.items()})
    return replies


def run_app(
    app_name: str,
    receiver: Receiver,
    tmp_path: Path,
    variants: tuple[str, ...] | None = None,
    modes: Mapping[str, str] | None = None,
) -> dict[tuple[str, str], RunResult]:
    """Start every (variant, mode) server of one app at once, send the request list to each,
    stop them with SIGTERM (which flushes) and return what each answered."""
    app = APPS[app_name]
    keys = [(v, m) for v in (variants or app.variants) for m in MODES]
    results: dict[tuple[str, str], RunResult] = {}
    with ExitStack() as stack:
        procs: dict[tuple[str, str], tuple[Proc, int, str]] = {}
        for variant, mode in keys:
            port = free_port()
            service = f"diff-{app_name}-{variant}-{mode}"
            env = _env(app, variant, mode, service, receiver)
            if modes and mode in modes:
                env["HYPERDX_SERVER_INSTRUMENTATION"] = modes[mode]
            proc = stack.enter_context(
                run(_argv(app, port, variant), env, tmp_path, name=service, cwd=APPS_DIR)
            )
            procs[(variant, mode)] = (proc, port, service)
        with ThreadPoolExecutor(len(procs)) as pool:
            futures = {
                key: pool.submit(_drive, proc, port) for key, (proc, port, _) in procs.items()
            }
            replies = {key: future.result() for key, future in futures.items()}
        _stop_all([proc for proc, _, _ in procs.values()])
        for (variant, mode), (proc, port, service) in procs.items():
            results[(variant, mode)] = RunResult(
                app_name,
                variant,
                mode,
                service,
                port,
                replies[(variant, mode)],
                proc.stderr,
                proc.returncode,
            )
    return results


def _stop_all(procs: list[Proc], timeout: float = 30.0) -> None:
    """SIGTERM every server at once (a second SIGTERM would make uvicorn skip its shutdown)."""
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.returncode = proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.returncode = proc.popen.wait()
        proc._stopped = True


def spans_and_points(collected: Collected, result: RunResult) -> tuple[list, list]:
    return collected.spans_of(result.service), collected.points_of(result.service)
