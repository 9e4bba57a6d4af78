"""Bench-only: wire the fast export path into ``configure_opentelemetry`` before the distro
does so itself, so the suite can measure it side by side with the default wiring.

Loaded from a ``.pth`` file the suite drops into its own "ours" venv; does nothing unless
``HDX_BENCH_FAST_EXPORT=1``. It patches the distro's module attributes (private, may move);
when that fails it says so on stderr and the run measures the default wiring.
"""

from __future__ import annotations

import os
import sys
from typing import Any


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

        def unwrap(exporter: Any) -> Any:
            # Our processors count failed exports themselves (into the distro's account).
            if type(exporter).__name__ == "CountingExporter":
                return exporter._exporter
            return exporter

        traces.CountingBatchSpanProcessor = lambda e: HyperDXBatchSpanProcessor(unwrap(e))  # type: ignore[misc,assignment]
        logs.CountingBatchLogRecordProcessor = lambda e: HyperDXBatchLogRecordProcessor(unwrap(e))  # type: ignore[misc,assignment]
    except (ImportError, AttributeError, KeyError) as exc:
        print(f"[hdx-bench] fast-export shim not applied: {exc!r}", file=sys.stderr)


install()
