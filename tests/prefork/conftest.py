"""Fixtures for the pre-fork server tests: a real OTLP receiver and a ping target."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from prefork.harness import ping_server

from support.otlp import running_receiver


@pytest.fixture
def receiver() -> Iterator[tuple[Any, Any]]:
    with running_receiver() as (rec, sink):
        yield rec, sink


@pytest.fixture(scope="session")
def ping_url() -> Iterator[str]:
    with ping_server() as url:
        yield url
