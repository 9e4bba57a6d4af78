"""Activating auto-instrumentation, the same set `opentelemetry-instrument` would load.

0.4.0's documented post-fork hook configured exporters but instrumented nothing (90 requests,
0 spans). Here `configure_opentelemetry()` activates the installed instrumentations itself,
unless the agent has done it (or will do it right after our configurator runs).
"""

from __future__ import annotations

import threading
from typing import Any

from hyperdx.opentelemetry import diagnostics

_lock = threading.Lock()
_activated = False
_agent_owns_loading = False


def mark_agent_loading() -> None:
    """Called from our configurator under `opentelemetry-instrument`: the agent loads them."""
    global _agent_owns_loading
    _agent_owns_loading = True


def mark_loaded() -> None:
    global _activated
    _activated = True


def activate(distro: Any | None = None) -> bool:
    """Instrument installed libraries once per process tree; True if this call did it."""
    global _activated
    with _lock:
        if _activated or _agent_owns_loading:
            return False
        _activated = True
    from opentelemetry.instrumentation.auto_instrumentation._load import _load_instrumentors

    from hyperdx.opentelemetry.distro import HyperDXDistro

    try:
        _load_instrumentors(distro or HyperDXDistro())
    except Exception as exc:  # noqa: BLE001 - one broken instrumentation must not stop the app
        diagnostics.error("auto-instrumentation stopped early: %s", exc)
    return True
