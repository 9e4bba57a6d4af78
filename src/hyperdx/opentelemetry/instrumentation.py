"""Activating auto-instrumentation lazily: each instrumentor when its library is imported.

contrib's loop (`_load_instrumentors`, run by `opentelemetry-instrument` or by
`configure_opentelemetry()`) still decides *which* instrumentors apply: it honours
OTEL_PYTHON_DISABLED_INSTRUMENTATIONS and checks version conflicts from package metadata,
without importing anything. It then hands each entry point to `load()`, which does not import
the instrumentor (that would import its library: Django, FastAPI, gRPC... at start-up, 0.5.0
paid ~70 MB for them) but waits for the app to import the library (see import_hook). A library
that is already imported is instrumented at once.

0.4.0's documented post-fork hook configured exporters but instrumented nothing (90 requests,
0 spans). Here `configure_opentelemetry()` runs the same loop itself, unless the agent has
done it (or will do it right after our configurator runs).
"""

from __future__ import annotations

import importlib.machinery
import logging
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

from hyperdx.opentelemetry import diagnostics, import_hook, instrumentor_arguments

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_activated = False
_agent_owns_loading = False
_started: set[str] = set()
_failures: dict[str, str] = {}

# Instrumentors of the standard library (no `instruments` requirement to read the module
# from) and what the app imports to need them.
_STDLIB_TRIGGERS: dict[str, tuple[str, ...]] = {
    "logging": ("logging",),
    "urllib": ("urllib.request",),
    "sqlite3": ("sqlite3",),
    "threading": ("threading",),
    "asyncio": ("asyncio",),
}
# Distributions whose import name differs from the distribution name (normalised).
_DIST_MODULES: dict[str, tuple[str, ...]] = {
    "grpcio": ("grpc",),
    "mysqlclient": ("MySQLdb",),
    "mysql-connector-python": ("mysql.connector",),
    "psycopg2-binary": ("psycopg2",),
    "psycopg-binary": ("psycopg",),
    "kafka-python": ("kafka",),
    "kafka-python-ng": ("kafka",),
    "confluent-kafka": ("confluent_kafka",),
    "aio-pika": ("aio_pika",),
    "cassandra-driver": ("cassandra",),
    "scylla-driver": ("cassandra",),
    "tortoise-orm": ("tortoise",),
    "google-cloud-aiplatform": ("vertexai", "google.cloud.aiplatform"),
}
# Run from the start whatever the app imports (they observe the process, not a library).
_EAGER = frozenset({"system_metrics", "system-metrics"})
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_INSTRUMENTS_LINE = re.compile(
    r"^Requires-Dist:\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^\n]*;[^\n]*"
    r"extra\s*==\s*[\"']instruments(?:-any)?[\"']",
    re.MULTILINE,
)


def mark_agent_loading() -> None:
    """Called from our configurator under `opentelemetry-instrument`: the agent loads them."""
    global _agent_owns_loading
    _agent_owns_loading = True


def mark_loaded() -> None:
    global _activated
    _activated = True


def activate() -> bool:
    """Run contrib's instrumentor loop once per process tree; True if this call did it."""
    global _activated
    with _lock:
        if _activated or _agent_owns_loading:
            return False
        _activated = True
    from opentelemetry.instrumentation.auto_instrumentation._load import _load_instrumentors

    try:
        _load_instrumentors(_Loader())
    except Exception as exc:  # noqa: BLE001 - one broken instrumentation must not stop the app
        diagnostics.error("auto-instrumentation stopped early: %s", exc)
    return True


class _Loader:
    """What contrib's loop calls per entry point (the distro's role outside the agent)."""

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        load(entry_point, **kwargs)


def load(entry_point: Any, **kwargs: Any) -> None:
    """Instrument `entry_point`'s library now if imported, else as soon as the app imports it."""
    mark_loaded()
    modules = trigger_modules(entry_point)
    if modules is None:  # a library we cannot name without importing it: contrib's way
        _activate(entry_point, kwargs, eager=True)
        return

    def activate() -> None:
        _activate(entry_point, kwargs, eager=False)

    defer = _AFTER_IMPORT.get(entry_point.name)
    import_hook.when_imported(modules, (lambda: defer(activate)) if defer else activate)


def _after_django_setup(activate: Callable[[], None]) -> None:
    """Django's instrumentors edit settings.MIDDLEWARE, so they start after django.setup().

    Django's own wsgi.py/asgi.py templates import Django *before* they set
    DJANGO_SETTINGS_MODULE; instrumenting at that import would configure empty settings.
    get_wsgi_application()/get_asgi_application()/manage.py all call django.setup() first
    and build the handler (which reads MIDDLEWARE) after it.
    """
    import django

    registry = sys.modules.get("django.apps")
    if registry is not None and getattr(getattr(registry, "apps", None), "ready", False):
        activate()  # set up before configure_opentelemetry() ran
        return
    original = django.setup

    def setup(*args: Any, **kwargs: Any) -> None:
        django.setup = original
        try:
            original(*args, **kwargs)
        finally:
            activate()

    django.setup = setup


# Instrumentors that must wait a little longer than their library's import.
_AFTER_IMPORT: dict[str, Callable[[Callable[[], None]], None]] = {"django": _after_django_setup}


def trigger_modules(entry_point: Any) -> tuple[str, ...] | None:
    """The modules whose import activates `entry_point`, from package metadata only."""
    name = entry_point.name
    if name in _EAGER:
        return None
    if name in _STDLIB_TRIGGERS:
        return _STDLIB_TRIGGERS[name]
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return None
    modules: list[str] = []
    for distribution in _instrumented_distributions(dist):
        for module in _modules_of(distribution):
            if module not in modules:
                modules.append(module)
    return tuple(modules) or None


def _instrumented_distributions(dist: Any) -> list[str]:
    """Names in the `instruments` / `instruments-any` extras of an instrumentation package.

    Read with a regular expression from METADATA: `dist.requires` parses the whole file as an
    e-mail message, ~3 ms per instrumentor, at every start-up.
    """
    text = dist.read_text("METADATA")
    if text is not None:
        return _INSTRUMENTS_LINE.findall(text)
    names = []
    for requirement in dist.requires or ():
        if "extra" in requirement and "instruments" in requirement:
            match = _REQ_NAME.match(requirement)
            if match is not None:
                names.append(match.group(1))
    return names


def _modules_of(distribution: str) -> tuple[str, ...]:
    normalised = re.sub(r"[-_.]+", "-", distribution).lower()
    if normalised in _DIST_MODULES:
        return _DIST_MODULES[normalised]
    candidate = normalised.replace("-", "_")
    if importlib.machinery.PathFinder.find_spec(candidate) is not None:
        return (candidate,)
    return _top_level_of(distribution)


def _top_level_of(distribution: str) -> tuple[str, ...]:
    """Top-level import names from the installed distribution's files (no import)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return ()  # the instruments-any alternative that is not installed
    text = dist.read_text("top_level.txt")
    if text:
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    names: list[str] = []
    for path in dist.files or ():
        top = path.parts[0] if path.parts else ""
        if top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__", ""):
            continue
        top = top.removesuffix(".py")
        if top.isidentifier() and top not in names:
            names.append(top)
    return tuple(names)


def _activate(entry_point: Any, kwargs: dict[str, Any], *, eager: bool) -> None:
    """Load and run one instrumentor; errors are counted and reported, never raised."""
    name = entry_point.name
    with _lock:
        if name in _started:
            return
        _started.add(name)
    try:
        arguments = instrumentor_arguments.for_instrumentor(name, kwargs)
        instrumentor = _lean_instrumentor(name) or entry_point.load()()
        instrumentor.instrument(**arguments)
    except ModuleNotFoundError as exc:
        if eager:  # contrib's rule: a library that is not installed is simply skipped
            _log.debug("skipping instrumentation %s: %s", name, exc)
            return
        _failed(name, exc)
    except Exception as exc:  # noqa: BLE001 - the app's import must go on
        _failed(name, exc)


def _lean_instrumentor(name: str) -> Any | None:
    """Our lean server instrumentation for a web framework, when it replaces contrib's."""
    try:
        from hyperdx.opentelemetry import server
    except ModuleNotFoundError as exc:
        if exc.name == "hyperdx.opentelemetry.server":
            return None
        raise
    if name not in server.LEAN_FRAMEWORKS:
        return None
    return server.lean_instrumentor(name)


def _failed(name: str, exc: BaseException) -> None:
    with _lock:
        _failures[name] = repr(exc)
    diagnostics.error("instrumentation %s is off: it failed to start: %r", name, exc)


def failures() -> dict[str, str]:
    """Instrumentors that raised while starting: entry point name -> error."""
    with _lock:
        return dict(_failures)
