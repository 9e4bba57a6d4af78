"""``opentelemetry.context``'s ``attach``, ``detach`` and ``get_current``, one call instead of two.

The API functions each call the runtime context's method, which calls the ``ContextVar``: two
Python frames per call, and a server request makes three to five such calls. With the stock
runtime context (``ContextVarsRuntimeContext``, the default of ``OTEL_PYTHON_CONTEXT``) these
call its ``ContextVar`` directly; the runtime context is read per call, so one replaced later
(or another runtime context) takes the API's own path. The three API functions and the three
methods are fingerprinted (``fast_span._fingerprint``): another SDK layout keeps the API path.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as _api
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

from hyperdx.opentelemetry.fast_span import _fingerprint


def fingerprints() -> dict[str, int]:
    """The installed API's fingerprints of the functions these mirror."""
    rt = ContextVarsRuntimeContext
    return {
        "attach": _fingerprint(_api.attach),
        "detach": _fingerprint(_api.detach),
        "get_current": _fingerprint(_api.get_current),
        "ContextVarsRuntimeContext.attach": _fingerprint(rt.attach),
        "ContextVarsRuntimeContext.detach": _fingerprint(rt.detach),
        "ContextVarsRuntimeContext.get_current": _fingerprint(rt.get_current),
    }


# As read from opentelemetry-api 1.45.1 (after re-verifying a new API, update both).
VERIFIED = {
    "attach": 3368041067,
    "detach": 3772024755,
    "get_current": 2012129581,
    "ContextVarsRuntimeContext.attach": 1858688441,
    "ContextVarsRuntimeContext.detach": 10485821,
    "ContextVarsRuntimeContext.get_current": 4080529815,
}


def _stock() -> tuple[Any, ContextVar[Any] | None]:
    runtime = getattr(_api, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if (
        type(runtime) is ContextVarsRuntimeContext
        and type(var) is ContextVar
        and fingerprints() == VERIFIED
    ):
        return runtime, var
    return None, None


_RUNTIME, _VAR = _stock()  # (the stock runtime context, its ContextVar), or (None, None)


def attach(ctx: _api.Context) -> Token[_api.Context]:
    """``opentelemetry.context.attach(ctx)``."""
    if _VAR is not None and _api._RUNTIME_CONTEXT is _RUNTIME:  # noqa: SLF001
        return _VAR.set(ctx)
    return _api.attach(ctx)


def detach(token: Any) -> None:
    """``opentelemetry.context.detach(token)`` (a failure is logged by the API, as there)."""
    if _VAR is not None and _api._RUNTIME_CONTEXT is _RUNTIME:  # noqa: SLF001
        try:
            _VAR.reset(token)
            return
        except Exception:  # noqa: BLE001, S110 - the API's call below logs it
            pass
    _api.detach(token)


def get_current() -> _api.Context:
    """``opentelemetry.context.get_current()``."""
    if _VAR is not None and _api._RUNTIME_CONTEXT is _RUNTIME:  # noqa: SLF001
        return _VAR.get()
    return _api.get_current()
