"""Make ``tests/support`` importable as ``support`` when tests/export runs on its own, and keep
the distro's process-wide drop account clean (these tests drop items on purpose)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


@pytest.fixture(autouse=True)
def _fresh_distro_drop_account() -> Iterator[None]:
    yield
    from hyperdx.opentelemetry import drops

    drops.reset()
