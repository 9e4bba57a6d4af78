"""A forked child's own identity: new ``service.instance.id``, its pid and parent pid.

Without this every worker reports the master's identity and metric series collide.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource

from hyperdx.opentelemetry.pipeline_parts import Pipeline

SERVICE_INSTANCE_ID = "service.instance.id"
PROCESS_PID = "process.pid"
PROCESS_PARENT_PID = "process.parent_pid"


def _new_instance_id() -> str:
    """The SDK regenerates ``service.instance.id`` per pid; reuse its value so all agree."""
    try:
        from opentelemetry.sdk.resources import ServiceInstanceIdResourceDetector

        value = ServiceInstanceIdResourceDetector().detect().attributes.get(SERVICE_INSTANCE_ID)
        if isinstance(value, str) and value:
            return value
    except ImportError:
        pass
    return str(uuid.uuid4())


def _child_identity() -> dict[str, Any]:
    return {
        SERVICE_INSTANCE_ID: _new_instance_id(),
        PROCESS_PID: os.getpid(),
        PROCESS_PARENT_PID: os.getppid(),
    }


def _replace_attributes(resource: Resource, updates: dict[str, Any]) -> None:
    """Update a Resource in place, so every holder of this very object sees the new identity."""
    merged = dict(resource.attributes)
    merged.update(updates)
    resource._attributes = BoundedAttributes(attributes=merged, immutable=True)  # noqa: SLF001


def refresh_identity(pipeline: Pipeline) -> None:
    """Set the child's identity on the shared Resource and on every provider/tracer/logger.

    The shared object is updated in place (holders that kept a reference see it); providers are
    then pointed at it again, because the SDK's own at-fork hook (SDK >= 1.39) merges a *copy*
    per provider and would otherwise leave the three signals on three objects.
    """
    identity = _child_identity()
    shared = pipeline.resource
    _replace_attributes(shared, identity)
    _point_providers_at(pipeline, shared)


def _point_providers_at(pipeline: Pipeline, resource: Resource) -> None:
    tp = pipeline.tracer_provider
    if hasattr(tp, "_resource"):
        lock = getattr(tp, "_tracers_lock", None) or threading.Lock()
        with lock:
            tp._resource = resource  # noqa: SLF001
            for tracer in list(getattr(tp, "_tracers", {}).values()):
                _set_holder_resource(tracer, resource)
    lp = pipeline.logger_provider
    if hasattr(lp, "_resource"):
        lock = getattr(lp, "_active_loggers_lock", None) or threading.Lock()
        with lock:
            lp._resource = resource  # noqa: SLF001
            for logger in list(getattr(lp, "_active_loggers", ())):
                _set_holder_resource(logger, resource)
            for logger in list(getattr(lp, "_logger_cache", {}).values()):
                _set_holder_resource(logger, resource)
    mp = pipeline.meter_provider
    sdk_config = getattr(mp, "_sdk_config", None)
    if sdk_config is not None:
        sdk_config.resource = resource


def _set_holder_resource(holder: Any, resource: Resource) -> None:
    setter = getattr(holder, "_set_resource", None)
    if callable(setter):
        setter(resource)
    elif hasattr(holder, "resource"):
        holder.resource = resource
    else:
        holder._resource = resource  # noqa: SLF001
