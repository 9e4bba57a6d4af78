"""The byte encoder must produce exactly what the stock OTLP encoder serializes."""

from __future__ import annotations

import pytest
from _factories import varied_logs, varied_spans
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hyperdx.opentelemetry.export import _wire
from hyperdx.opentelemetry.export._logs import encode_log, encode_logs_bytes
from hyperdx.opentelemetry.export._spans import encode_span, encode_spans_bytes
from hyperdx.opentelemetry.export.exporters import encode_sliced


def test_spans_are_byte_identical_to_the_stock_encoder() -> None:
    spans = varied_spans()
    assert len(spans) == 24
    # The fixture really exercises the rare fields.
    assert any(s.dropped_attributes for s in spans)
    assert any(s.dropped_events for s in spans)
    assert any(s.dropped_links for s in spans)
    assert any(s.parent is not None and s.parent.is_remote for s in spans)
    assert encode_spans_bytes(spans) == encode_spans(spans).SerializeToString()


def test_equal_scopes_merge_like_the_stock_encoder() -> None:
    spans = varied_spans()
    request = ExportTraceServiceRequest.FromString(encode_spans_bytes(spans))
    services = [
        next(kv.value.string_value for kv in rs.resource.attributes if kv.key == "service.name")
        for rs in request.resource_spans
    ]
    assert services == ["svc-a", "svc-b"]
    # lib.one appears twice as distinct-but-equal scope objects: one ScopeSpans each resource.
    names = [[ss.scope.name for ss in rs.scope_spans] for rs in request.resource_spans]
    assert names == [["lib.one", "lib.two"], ["lib.one", "lib.two"]]


@pytest.mark.parametrize("slice_size", [1, 5, 32, 1000])
def test_sliced_encoding_gives_the_same_bytes(slice_size: int) -> None:
    spans = varied_spans()
    assert encode_sliced(spans, encode_span, slice_size, 0.0) == encode_spans_bytes(spans)


def test_logs_are_byte_identical_to_the_stock_encoder() -> None:
    records = varied_logs()
    assert len(records) == 9
    assert encode_logs_bytes(records) == encode_logs(records).SerializeToString()
    assert encode_sliced(records, encode_log, 3, 0.0) == encode_logs_bytes(records)


def test_empty_batch_encodes_to_empty_request() -> None:
    assert encode_spans_bytes([]) == encode_spans([]).SerializeToString() == b""


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**32, 2**63 - 1, -1, -(2**63)])
def test_varint_matches_protobuf(n: int) -> None:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    assert b"\x18" + _wire.varint(n) == AnyValue(int_value=n).SerializeToString()


def test_unencodable_attribute_is_skipped_like_stock(caplog: pytest.LogCaptureFixture) -> None:
    out = _wire.attributes(b"\x4a", {"ok": "v", "bad": object()})
    assert len(out) == 1
    assert "Failed to encode key bad" in caplog.text


def test_attribute_cache_keeps_true_one_and_float_apart() -> None:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    seen = []
    for value in (1, True, 1.0, "1", 1, True):
        [field] = _wire.attributes(b"\x0a", {"a": value})
        kv = KeyValue.FromString(field[2:])
        seen.append(getattr(kv.value, kv.value.WhichOneof("value")))
        assert type(seen[-1]) is type(value)
    assert seen == [1, True, 1.0, "1", 1, True]


def test_span_subclasses_take_the_public_property_path() -> None:
    """Spans that are not exactly the SDK's ReadableSpan (a user's wrapper) are read through
    the public properties; the bytes must be the same."""
    import copy

    from opentelemetry.sdk.trace import ReadableSpan

    class Wrapped(ReadableSpan):
        pass

    spans = varied_spans()
    wrapped = []
    for span in spans:
        clone = copy.copy(span)
        clone.__class__ = Wrapped
        wrapped.append(clone)
    assert encode_spans_bytes(wrapped) == encode_spans(spans).SerializeToString()
