"""Tracer-provider parts for comparing two span paths field for field: ids that count up (the
same on both runs) and a processor that keeps what ended."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator


class CountingIds(IdGenerator):
    """Span and trace ids 1, 2, 3... (trace ids above ``prefix << 64``); ``random(n)`` says
    whether a trace id is marked random (the W3C random-trace-id flag) when ``n`` ids are out."""

    def __init__(self, prefix: int, random: Callable[[int], bool] = lambda n: True) -> None:
        self.n = 0
        self._prefix = prefix
        self._random = random

    def generate_span_id(self) -> int:
        self.n += 1
        return self.n

    def generate_trace_id(self) -> int:
        self.n += 1
        return (self._prefix << 64) + self.n

    def is_trace_id_random(self) -> bool:
        return self._random(self.n)


class Ended(SpanProcessor):
    """Keeps every span that ended (only ``on_end``: the SDK calls it as a user's processor)."""

    def __init__(self) -> None:
        self.ended: list[Any] = []

    def on_end(self, span: Any) -> None:
        self.ended.append(span)
