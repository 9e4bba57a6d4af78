"""Which handlers are OpenTelemetry log handlers (ours, the instrumentation's, the SDK's).

Its own module so that ``diagnostics`` can ask without importing the logs pipeline (which
reports through ``drops`` -> ``diagnostics``: an import cycle).
"""

from __future__ import annotations

import logging

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggingHandler as SdkLoggingHandler


def is_otlp_handler(handler: logging.Handler) -> bool:
    """Any OpenTelemetry log handler: ours, the instrumentation's, or the SDK's deprecated one."""
    return isinstance(handler, (LoggingHandler, SdkLoggingHandler))
