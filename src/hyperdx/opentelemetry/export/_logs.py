"""OTLP log encoding straight to bytes (``ExportLogsServiceRequest``).

Mirrors ``opentelemetry.exporter.otlp.proto.common._log_encoder.encode_logs`` field for
field, so the output is byte-identical to the stock ``SerializeToString()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord

from ._spans import assemble, group
from ._wire import any_value, attributes, field_bytes, pack_fixed32, pack_fixed64, varint

_SEVERITY = [b"\x10" + varint(n) for n in range(25)]
_BODY_NONE = b"\x2a\x00"


def encode_log(readable: ReadableLogRecord | ReadWriteLogRecord) -> bytes:
    """One ``LogRecord`` message body (without its tag and length)."""
    rec: Any = readable.log_record
    parts = []
    ts = rec.timestamp
    if ts:
        parts.append(b"\x09" + pack_fixed64(ts))
    sev = rec.severity_number
    if sev is not None:
        n = sev.value
        if n:
            parts.append(_SEVERITY[n] if 0 < n < 25 else b"\x10" + varint(n))
    text = rec.severity_text
    if text:
        parts.append(field_bytes(b"\x1a", text.encode("utf-8")))
    body = rec.body
    if type(body) is str:
        parts.append(field_bytes(b"\x2a", field_bytes(b"\x0a", body.encode("utf-8"))))
    elif body is None:
        parts.append(_BODY_NONE)
    else:
        parts.append(field_bytes(b"\x2a", any_value(body)))
    attrs = rec.attributes
    if attrs:
        parts.extend(attributes(b"\x32", attrs))
    dropped = readable.dropped_attributes
    if dropped:
        parts.append(b"\x38" + varint(dropped))
    flags = int(rec.trace_flags) if rec.trace_flags is not None else 0
    if flags:
        parts.append(b"\x45" + pack_fixed32(flags))
    tid = rec.trace_id
    if tid:
        parts.append(b"\x4a\x10" + tid.to_bytes(16, "big"))
    sid = rec.span_id
    if sid:
        parts.append(b"\x52\x08" + sid.to_bytes(8, "big"))
    obs = rec.observed_timestamp
    if obs:
        parts.append(b"\x59" + pack_fixed64(obs))
    name = rec.event_name
    if name:
        parts.append(field_bytes(b"\x62", name.encode("utf-8")))
    return b"".join(parts)


def encode_logs_bytes(batch: Sequence[ReadableLogRecord]) -> bytes:
    """Whole-batch convenience: the serialized ``ExportLogsServiceRequest``."""
    return assemble(group(batch, [encode_log(r) for r in batch]))
