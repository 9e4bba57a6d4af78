"""Assembling a batch of spans encoded at hand-off: same bytes as the stock encoder, whether
the batch has one resource and scope (the fast path) or several (the general grouping)."""

from __future__ import annotations

import pytest
from _factories import varied_spans
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hyperdx.opentelemetry.export import _spans
from hyperdx.opentelemetry.export._spans import assemble, encode_span, group_encoded


def _triples(spans: list) -> list[tuple]:
    return [(s.resource, s.instrumentation_scope or None, encode_span(s)) for s in spans]


def _one_scope_spans(sizes: list[int]) -> list:
    """Spans of one resource and one scope, with an attribute of each size (short, >=128 and
    >=16384 encoded bytes, so the length prefixes take one, two and three bytes)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "one"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("only.scope", "2.0")
    for i, size in enumerate(sizes):
        with tracer.start_as_current_span(f"op-{i}", attributes={"blob": "x" * size}):
            pass
    return list(memory.get_finished_spans())


def test_one_resource_and_scope_is_byte_identical_to_the_stock_encoder() -> None:
    spans = _one_scope_spans([1, 100, 200, 20000, 5, 200])
    encoded = [len(t[2]) for t in _triples(spans)]
    assert min(encoded) < 128 and max(encoded) >= 16384
    assert any(128 <= n < 16384 for n in encoded)
    groups = group_encoded(_triples(spans))
    assert [len(scopes) for scopes in groups.values()] == [1]  # the fast path's shape
    assert assemble(groups) == encode_spans(spans).SerializeToString()


def test_mixed_resources_and_scopes_keep_first_seen_order() -> None:
    spans = varied_spans()
    triples = _triples(spans)
    assert len({id(t[0]) for t in triples}) == 2 and len({id(t[1]) for t in triples}) > 2
    assert assemble(group_encoded(triples)) == encode_spans(spans).SerializeToString()


def test_stray_scope_makes_a_second_group() -> None:
    one = _triples(_one_scope_spans([3, 4]))
    stray = _triples(varied_spans()[:1])
    groups = group_encoded(one + stray)
    assert len(groups) == 2
    assert [len(v) for s in groups.values() for v in s.values()] == [2, 1]


def test_length_prefix_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_spans, "_PREFIXES_MAX", 3)
    monkeypatch.setattr(_spans, "_prefixes", {})
    items = [b"a" * n for n in (1, 2, 3, 4, 5, 300)]
    framed = _spans._framed(b"\x12", items)
    assert framed == [p for it in items for p in (_wire_prefix(len(it)), it)]
    assert len(_spans._prefixes[b"\x12"]) <= 3


def test_empty_group_assembles_to_nothing() -> None:
    assert group_encoded([]) == {}
    assert assemble(group_encoded([])) == b""


def _wire_prefix(n: int) -> bytes:
    from hyperdx.opentelemetry.export._wire import varint

    return b"\x12" + varint(n)
