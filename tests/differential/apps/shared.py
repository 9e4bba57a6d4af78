"""What every differential app shares: the /ctx payload and the plain-app wrapping.

The apps behave identically (same routes, same bodies) so that any difference in telemetry
between the two instrumentation modes comes from the instrumentation, not from the app.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from opentelemetry import baggage, trace

STREAM_CHUNKS = (b"chunk-1\n", b"chunk-2\n", b"chunk-3\n")


def context_payload() -> dict[str, Any]:
    """The trace context and baggage the app sees inside the request (echoed by /ctx)."""
    context = trace.get_current_span().get_span_context()
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "sampled": context.trace_flags.sampled,
        "recording": trace.get_current_span().is_recording(),
        "baggage": {key: str(value) for key, value in sorted(baggage.get_all().items())},
        # Which request path is really running (the suite checks ours is not contrib's).
        "server_modules": sorted(
            # A copy first: another thread (an exporter) may import while we iterate.
            name
            for name in list(sys.modules)
            if name.startswith("hyperdx.opentelemetry.server.")
        ),
    }


def _mode() -> str:
    return os.environ.get("HYPERDX_SERVER_INSTRUMENTATION", "lean").strip().lower()


def instrument_wsgi(app: Any) -> Any:
    """Wrap a plain WSGI app the way a user of the selected mode would."""
    if _mode() != "contrib":  # no fallback: a broken import must fail the run, not hide
        from hyperdx.opentelemetry.server.wsgi import OpenTelemetryWSGIMiddleware

        return OpenTelemetryWSGIMiddleware(app)
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(app)


def instrument_asgi(app: Any) -> Any:
    """Wrap a plain ASGI app the way a user of the selected mode would."""
    if _mode() != "contrib":
        from hyperdx.opentelemetry.server.asgi import OpenTelemetryASGIMiddleware

        return OpenTelemetryASGIMiddleware(app)
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(app)
