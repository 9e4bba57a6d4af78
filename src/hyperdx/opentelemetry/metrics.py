"""The meter provider: periodic OTLP export, delta temporality for counters and histograms.

Why delta: forked workers (gunicorn, uWSGI, Celery) each keep their own counters, and each
restart begins at zero again. With delta points every row in ClickStack is "what happened in
this interval in this process", so `sum(Value)` across workers and restarts is simply right;
cumulative series from many short-lived workers need per-series reset detection. ClickStack
stores AggregationTemporality per row, so both work; users who prefer cumulative set
OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative, which we honour.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from hyperdx.opentelemetry import drops, metrics_fast
from hyperdx.opentelemetry.hygiene import exemplar_filter, metric_views
from hyperdx.opentelemetry.options import Settings
from hyperdx.opentelemetry.temporality import DELTA

TEMPORALITY_VARIABLE = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"


def exporter_arguments() -> dict[str, Any]:
    """Our temporality default, unless the user chose one through the standard variable."""
    if os.environ.get(TEMPORALITY_VARIABLE, "").strip():
        return {}
    return {"preferred_temporality": DELTA}


def build_meter_provider(
    settings: Settings, resource: Resource, exporter: Any | None
) -> MeterProvider:
    readers: list[PeriodicExportingMetricReader] = []
    if settings.debug.value:
        from hyperdx.opentelemetry.console import ConsoleMetricExporter

        readers.append(
            PeriodicExportingMetricReader(
                ConsoleMetricExporter(),
                export_interval_millis=settings.metric_export_interval_ms.value,
            )
        )
    if exporter is not None:
        readers.append(
            PeriodicExportingMetricReader(
                drops.counting(exporter, "metrics"),
                export_interval_millis=settings.metric_export_interval_ms.value,
            )
        )
    provider = MeterProvider(
        metric_readers=readers,
        resource=resource,
        shutdown_on_exit=False,
        views=metric_views(),
        exemplar_filter=exemplar_filter(),
    )
    metrics_fast.adopt(provider)  # our server histograms may record cheaply into it
    return provider
