"""The one Resource shared by traces, logs and metrics.

0.4.0 gave logs a different (empty) resource, so a service name set in code became
`unknown_service:python` on logs. Here every provider receives this same object; the fork
handling (forking.py) refreshes its per-process identity in place after a fork.
"""

from __future__ import annotations

import os
import platform
import socket
import uuid

from opentelemetry.sdk.resources import Resource

from hyperdx.opentelemetry.options import Settings
from hyperdx.opentelemetry.version import __version__


def process_identity() -> dict[str, str | int]:
    """Attributes that differ per process: two forked workers must never share them."""
    return {"process.pid": os.getpid(), "service.instance.id": str(uuid.uuid4())}


def build_resource(settings: Settings) -> Resource:
    """Resource.create merges OTEL_RESOURCE_ATTRIBUTES and the SDK's telemetry.sdk.* for us."""
    attributes: dict[str, str | int] = {
        "hyperdx.distro.version": __version__,
        "telemetry.distro.name": "hyperdx-opentelemetry",
        "telemetry.distro.version": __version__,
        "process.runtime.name": platform.python_implementation().lower(),
        "process.runtime.version": platform.python_version(),
        "host.name": socket.gethostname(),
        **process_identity(),
    }
    attributes.update(settings.resource_attributes)
    # Explicitly resolved values win over OTEL_RESOURCE_ATTRIBUTES (code > environment),
    # but a service.name found only in OTEL_RESOURCE_ATTRIBUTES is what resolve() returned.
    attributes["service.name"] = settings.service_name.value
    if settings.service_version.value:
        attributes["service.version"] = settings.service_version.value
    return Resource.create(attributes)
