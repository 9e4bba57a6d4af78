"""Builds the peer virtualenvs the suite compares against, outside the repository.

Each configuration gets its own venv so that one peer's dependency pins cannot leak into
another's numbers. Venvs are cached under ``$HYPERDX_BENCH_HOME`` (default
``~/.cache/hyperdx-bench``) and rebuilt only when their recipe changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOME = Path(os.environ.get("HYPERDX_BENCH_HOME", Path.home() / ".cache" / "hyperdx-bench"))

# The served apps (Flask, FastAPI, Django) plus what a typical service venv also holds. Every
# peer gets the same set, so start-up and worker RSS compare agents over the same libraries
# (an agent that imports every installed instrumented library pays for all of them).
APP_DEPS = [
    "flask",
    "gunicorn",
    "fastapi",
    "uvicorn",
    "django",
    "celery",
    "aiohttp",
    "httpx",
    "grpcio",
    "requests",
]
OTEL_PINS = [
    "opentelemetry-sdk==1.45.1",
    "opentelemetry-api==1.45.1",
    "opentelemetry-exporter-otlp-proto-http==1.45.1",
    "opentelemetry-instrumentation==0.66b1",
]


@dataclass(frozen=True)
class Recipe:
    """What goes into one venv; ``bootstrap`` runs ``opentelemetry-bootstrap -a requirements``
    so the venv gets the instrumentations a user following the peer's README would get."""

    name: str
    packages: tuple[str, ...]
    editable: tuple[str, ...] = ()
    bootstrap: bool = True

    def digest(self) -> str:
        blob = json.dumps([self.packages, self.editable, self.bootstrap]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


RECIPES: dict[str, Recipe] = {
    # The uninstrumented runs use this venv too, without the agent.
    "vanilla": Recipe(
        "vanilla",
        (*APP_DEPS, "opentelemetry-distro==0.66b1", *OTEL_PINS),
    ),
    # Pinned to the same OpenTelemetry line: with a floating resolution our index serves
    # contrib 0.66b2, which lacks flask/wsgi/urllib instrumentations (see pyproject.toml).
    "hdx040": Recipe(
        "hdx040",
        (
            *APP_DEPS,
            "hyperdx-opentelemetry==0.4.0",
            "opentelemetry-exporter-otlp==1.45.1",
            *OTEL_PINS,
        ),
    ),
    "ours": Recipe("ours", tuple(APP_DEPS), editable=(str(REPO),)),
}


def venv_dir(name: str) -> Path:
    return HOME / name


def python_of(name: str) -> Path:
    return venv_dir(name) / "bin" / "python"


def _run(cmd: list[str], log: Path) -> str:
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, check=False)
        fh.write(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return proc.stdout


def ensure(name: str, *, quiet: bool = False) -> Path:
    """Create (or reuse) the venv for ``name`` and return its python."""
    recipe = RECIPES[name]
    vdir = venv_dir(name)
    stamp = vdir / ".recipe"
    if stamp.exists() and stamp.read_text() == recipe.digest():
        _remove_old_shim(vdir)
        return python_of(name)
    HOME.mkdir(parents=True, exist_ok=True)
    log = HOME / f"{name}.build.log"
    log.write_text("")
    if not quiet:
        print(f"[bench] building venv {name} in {vdir} (log: {log})", file=sys.stderr)
    _run([sys.executable, "-m", "venv", "--clear", str(vdir)], log)
    pip = [str(python_of(name)), "-m", "pip", "--disable-pip-version-check", "-q"]
    args = [*recipe.packages]
    for path in recipe.editable:
        args += ["-e", path]
    _run([*pip, "install", *args], log)
    if recipe.bootstrap:
        reqs = _run([str(vdir / "bin" / "opentelemetry-bootstrap"), "-a", "requirements"], log)
        wanted = [line.strip() for line in reqs.splitlines() if line.strip()]
        if wanted:
            _run([*pip, "install", *wanted], log)
    stamp.write_text(recipe.digest())
    return python_of(name)


def _remove_old_shim(vdir: Path) -> None:
    """Venvs built before the fast export path was wired in carry a bench-only .pth shim."""
    for site in (vdir / "lib").glob("python3*/site-packages"):
        (site / "hdx_bench_shim.pth").unlink(missing_ok=True)


def versions(name: str) -> dict[str, str]:
    """Installed versions of the packages that matter for the comparison."""
    out = subprocess.run(
        [str(python_of(name)), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    keep = ("opentelemetry-sdk", "opentelemetry-distro", "hyperdx-opentelemetry", "protobuf")
    return {p["name"]: p["version"] for p in json.loads(out) if p["name"].lower() in keep}


if __name__ == "__main__":
    for n in sys.argv[1:] or list(RECIPES):
        print(n, ensure(n), versions(n))
