"""Imported first by the apps: with DIFF_CONFIGURE_IN_CODE=1 (no agent) the app configures
telemetry itself, before importing its framework, as the README tells users to."""

from __future__ import annotations

import os

if os.environ.get("DIFF_CONFIGURE_IN_CODE"):
    from hyperdx.opentelemetry import configure_opentelemetry

    configure_opentelemetry()
