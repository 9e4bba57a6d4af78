"""Bench-only: wire the fast export path into ``configure_opentelemetry`` before the distro
does so itself, so the suite can measure it side by side with the default wiring.

Loaded from a ``.pth`` file the suite drops into its own "ours" venv; does nothing unless
``HDX_BENCH_FAST_EXPORT=1``. It patches the distro's module attributes (private, may move);
when that fails it says so on stderr and the run measures the default wiring.
"""

from __future__ import annotations

import os
import sys


def install() -> None:
    if os.environ.get("HDX_BENCH_FAST_EXPORT") != "1":
        return
    try:
        from hyperdx.opentelemetry import exporters, logs, traces
        from hyperdx.opentelemetry.export import (
            HyperDXBatchLogRecordProcessor,
            HyperDXBatchSpanProcessor,
        )

        exporters._HTTP["traces"] = (
            "hyperdx.opentelemetry.export.exporters",
            "HyperDXSpanExporter",
        )
        exporters._HTTP["logs"] = ("hyperdx.opentelemetry.export.exporters", "HyperDXLogExporter")
        traces.CountingBatchSpanProcessor = HyperDXBatchSpanProcessor  # type: ignore[misc,assignment]
        logs.CountingBatchLogRecordProcessor = HyperDXBatchLogRecordProcessor  # type: ignore[misc,assignment]
    except (ImportError, AttributeError, KeyError) as exc:
        print(f"[hdx-bench] fast-export shim not applied: {exc!r}", file=sys.stderr)


install()
