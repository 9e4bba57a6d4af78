"""OTLP log encoding straight to bytes (``ExportLogsServiceRequest``).

Mirrors ``opentelemetry.exporter.otlp.proto.common._log_encoder.encode_logs`` field for
field, so the output is byte-identical to the stock ``SerializeToString()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord

from ._spans import assemble, group
from ._wire import any_value, attributes_into, field_bytes, pack_fixed32, pack_fixed64, varint

_SEVERITY = [b"\x10" + varint(n) for n in range(25)]
_BODY_NONE = b"\x2a\x00"
_SMALL = [bytes((i,)) for i in range(128)]
_severity_text: dict[str, bytes] = {}  # "WARN" -> finished field; a handful of values


def encode_log(readable: ReadableLogRecord | ReadWriteLogRecord) -> bytes:
    """One ``LogRecord`` message body (without its tag and length)."""
    rec: Any = readable.log_record
    parts = []
    ts = rec.timestamp
    if ts:
        parts.append(b"\x09" + pack_fixed64(ts))
    sev = rec.severity_number
    if sev is not None:
        n = sev._value_
        if n:
            parts.append(_SEVERITY[n] if 0 < n < 25 else b"\x10" + varint(n))
    text = rec.severity_text
    if text:
        field = _severity_text.get(text)
        if field is None:
            field = field_bytes(b"\x1a", text.encode("utf-8"))
            if len(_severity_text) < 64:
                _severity_text[text] = field
        parts.append(field)
    body = rec.body
    if type(body) is str:
        raw = body.encode("utf-8")
        n = len(raw)
        if n < 126:  # both lengths fit one byte: AnyValue{string_value} inside field 5
            parts.append(b"\x2a" + _SMALL[n + 2] + b"\x0a" + _SMALL[n] + raw)
        else:
            parts.append(field_bytes(b"\x2a", field_bytes(b"\x0a", raw)))
    elif body is None:
        parts.append(_BODY_NONE)
    else:
        parts.append(field_bytes(b"\x2a", any_value(body)))
    attrs = rec.attributes
    if attrs:
        attributes_into(parts, b"\x32", attrs)
    dropped = getattr(attrs, "dropped", 0)
    if dropped:
        parts.append(b"\x38" + varint(dropped))
    flags = rec.trace_flags
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
