"""OTLP values -> ClickHouse column values, as ClickStack's exporter writes them.

Attribute values are stringified like pdata's ``AsString`` (REFERENCE.md section 2 rule 1),
ids become lowercase hex, and nanosecond times become DateTime64(9) text ClickHouse parses
exactly.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

__all__ = [
    "NestedValue",
    "any_value_to_python",
    "attribute_map",
    "attributes_of",
    "datetime64",
    "exemplar_id",
    "format_double",
    "hex_id",
    "other_text",
    "service_name",
    "string_map",
    "stringify",
]


class _Unencodable(ValueError):
    """A NaN/Inf inside an array or map: Go's JSON encoder refuses it, the value becomes ""."""


def format_double(value: float) -> str:
    """Format a double like Go's pcommon ``AsString`` (ES6 number-to-string rules).

    Fixed notation unless ``abs < 1e-6`` or ``abs >= 1e21``; shortest round-trip digits;
    ``1`` not ``1.0``; exponent as ``e+21`` / ``e-7``.
    """
    text = repr(value)
    if "e" not in text and "n" not in text:  # repr is fixed-point for 1e-4 <= |v| < 1e16
        return text[:-2] if text.endswith(".0") else text
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    magnitude = abs(value)
    if magnitude == 0 or 1e-6 <= magnitude < 1e21:
        text = format(Decimal(repr(value)), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    significant = "".join(map(str, digits)).rstrip("0") or "0"
    sci_exponent = exponent + len(digits) - 1
    mantissa = significant[0] + ("." + significant[1:] if len(significant) > 1 else "")
    exp_sign = "-" if sci_exponent < 0 else "+"
    exp_digits = str(abs(sci_exponent))
    if exp_sign == "+" and len(exp_digits) < 2:
        exp_digits = exp_digits.zfill(2)
    return f"{'-' if sign else ''}{mantissa}e{exp_sign}{exp_digits}"


def any_value_to_python(value: AnyValue) -> Any:
    """AnyValue -> plain Python (str, bool, int, float, bytes, list, dict, None)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value_to_python(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value_to_python(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _json_text(value: Any) -> str:
    """Compact JSON like Go's encoding/json without HTML escaping: sorted keys, ES6 numbers."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise _Unencodable("NaN or Infinity inside an array or map")
        return format_double(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, bytes):
        return '"' + base64.b64encode(value).decode("ascii") + '"'
    if isinstance(value, list):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(_json_string(k) + ":" + _json_text(v) for k, v in items) + "}"
    raise TypeError(f"value of type {type(value).__name__} is not an OTLP value")


def _json_string(text: str) -> str:
    # Go escapes U+2028/U+2029 even with HTML escaping off; Python's encoder does not.
    return (
        json.dumps(text, ensure_ascii=False)
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def stringify(value: Any) -> str:
    """One OTLP value (as plain Python) -> the string stored in a Map(String, String) column."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    try:
        return _json_text(value)
    except _Unencodable:
        return ""


def attributes_of(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """KeyValue list -> ordered dict of plain values (a repeated key: the last one wins)."""
    return {kv.key: any_value_to_python(kv.value) for kv in pairs}


def string_map(values: Mapping[str, Any]) -> dict[str, str]:
    return {key: stringify(value) for key, value in values.items()}


class NestedValue(ValueError):
    """An array or map attribute met by ``attribute_map(..., scalar_only=True)``."""


def attribute_map(pairs: Iterable[KeyValue], scalar_only: bool = False) -> dict[str, str]:
    """KeyValue list -> Map(String, String) value; the hot path of every row.

    With ``scalar_only``, an array or map value raises :class:`NestedValue` instead.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        value = pair.value
        # A set field of a oneof is the only one that can differ from its default, so a
        # non-empty string or non-zero int names the kind without WhichOneof (~2x dearer).
        text = value.string_value
        if text:
            out[pair.key] = text
            continue
        number = value.int_value
        if number:
            out[pair.key] = str(number)
            continue
        other = other_text(value)
        if other is None:
            if scalar_only:
                raise NestedValue(pair.key)
            other = stringify(any_value_to_python(value))
        out[pair.key] = other
    return out


def other_text(value: AnyValue) -> str | None:
    """:func:`attribute_map`'s text of a value that is neither a non-empty string nor a
    non-zero int; None for an array or map (JSON text, or refused as nested)."""
    kind = value.WhichOneof("value")
    if kind is None or kind == "string_value":
        return ""
    if kind == "int_value":
        return "0"
    if kind == "array_value" or kind == "kvlist_value":
        return None
    return stringify(getattr(value, kind))


def hex_id(raw: bytes) -> str:
    """Span/trace id -> lowercase hex; empty or all-zero -> "" (ClickStack stores no zeros)."""
    return raw.hex() if any(raw) else ""


def exemplar_id(raw: bytes, size: int) -> str:
    """Exemplar ids are plain hex of a fixed-size array: missing stays all zeros."""
    return raw.hex() if len(raw) == size else "0" * (2 * size)


# ClickHouse reads "<sec>.<ns>" as a unix time only when <sec> is long enough (shorter ones
# are tried as dates and fail), and DateTime64(9) ends at 2**63-1 ns (year 2262).
_UNIX_TEXT_FROM_NS = 1_000_000_000 * 1_000_000_000
_MAX_DATETIME64_NS = 2**63 - 1


def datetime64(nanos: int) -> str:
    """Nanoseconds since the epoch -> exact DateTime64(9) JSON text.

    ``"<sec>.<ns:09d>"`` from 2001-09-09 on; earlier instants (a zero timestamp) as
    ``"YYYY-MM-DD hh:mm:ss.<ns>"`` UTC, which ClickHouse parses for any date; values past
    DateTime64(9)'s range are clamped to its end instead of failing the whole insert.
    """
    if _UNIX_TEXT_FROM_NS <= nanos <= _MAX_DATETIME64_NS:
        text = str(nanos)  # 19 digits: 10 of seconds, 9 of nanoseconds (~4x cheaper)
        return f"{text[:-9]}.{text[-9:]}"
    seconds, fraction = divmod(min(nanos, _MAX_DATETIME64_NS), 1_000_000_000)
    if nanos >= _UNIX_TEXT_FROM_NS:
        return f"{seconds}.{fraction:09d}"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}"


def service_name(resource: Resource) -> str:
    name = ""
    for kv in resource.attributes:
        if kv.key == "service.name":
            name = stringify(any_value_to_python(kv.value))
    return name
