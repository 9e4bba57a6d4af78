"""Session fixtures of the differential suite: one typed receiver, one run per app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from differential.collector import Collected, typed_receiver
from differential.servers import RunResult, run_app


class Runs:
    """Runs every app at most once per session (all its variants and both modes at once)."""

    def __init__(self, receiver: Any, collected: Collected, tmp: Path) -> None:
        self.receiver, self.collected, self._tmp = receiver, collected, tmp
        self._runs: dict[str, dict[tuple[str, str], RunResult]] = {}
        self.observed: list[Any] = []  # every Difference seen, for the stale-entry check
        self.compared: set[tuple[str, str, str]] = set()

    def of(self, app: str) -> dict[tuple[str, str], RunResult]:
        if app not in self._runs:
            folder = self._tmp / app
            folder.mkdir()
            self._runs[app] = run_app(app, self.receiver, folder)
        return self._runs[app]


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    with typed_receiver() as (receiver, collected):
        yield Runs(receiver, collected, tmp_path_factory.mktemp("differential"))
