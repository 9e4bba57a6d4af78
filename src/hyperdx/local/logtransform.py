"""HyperDX's collector log transform (REFERENCE.md section 1.6), for ``otel_logs`` rows.

JSON found in a string body and a map body become attributes, attributes are flattened,
and severity is promoted from ``level``-style attributes or inferred from the body when the
producer set none; severity text is always lower-cased.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from hyperdx.local.values import any_value_to_python, stringify

__all__ = ["transform_log"]

_JSON_SPAN = re.compile(r"\{.*\}")  # greedy, first "{" to last "}" on that line, like RE2 "."
_LEVEL_KEYS = ("level", "Level", "LEVEL", "severity", "Severity", "SEVERITY", "log.level")
# (substring or keyword group, severity number); order matters, see _promoted_number.
_PROMOTION_RULES = (
    (("alert", "crit", "emerg", "fatal"), 21),
    (("error", "err"), 17),
    (("warn", "notice"), 13),
    (("info",), 9),
    (("debug", "dbug"), 5),
    (("trace",), 1),
)
_INFER_KEYWORD = re.compile(
    r"\b(alert|crit|emerg|fatal|error|err|warn|notice|debug|dbug|trace)", re.IGNORECASE | re.ASCII
)
_INFERRED = {
    "alert": ("fatal", 21),
    "crit": ("fatal", 21),
    "emerg": ("fatal", 21),
    "fatal": ("fatal", 21),
    "error": ("error", 17),
    "err": ("error", 17),
    "warn": ("warn", 13),
    "notice": ("warn", 13),
    "debug": ("debug", 5),
    "dbug": ("debug", 5),
    "trace": ("trace", 1),
}


def transform_log(record: LogRecord, attributes: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """HyperDX's collector log transform (REFERENCE.md section 1.6), statement by statement.

    Returns (severity text, severity number, attributes as plain values). Every step ignores
    its own errors, as the processor runs with ``error_mode: ignore``.
    """
    body = any_value_to_python(record.body)
    attributes = dict(attributes)
    # 1. JSON object somewhere in a string body -> upserted into the attributes.
    if isinstance(body, str):
        match = _JSON_SPAN.search(body)
        if match is not None:
            parsed = _parse_json_object(match.group(0))
            if parsed is not None:
                attributes.update(parsed)
    # 2. Flatten nested maps and arrays (always: the guard tests the cache, always a map).
    attributes = _flatten(attributes)
    # 3. A map body's top-level entries are upserted after flattening (nested stay nested).
    if isinstance(body, dict):
        attributes.update(body)
    text = record.severity_text
    number: int = record.severity_number
    if number == 0 and text == "":
        promoted = _promoted_level(attributes)
        if promoted is not None:
            text, number = promoted, _promoted_number(promoted)
        else:
            text, number = _inferred_level(stringify(body))
    return text.lower(), number, attributes


def _parse_json_object(text: str) -> dict[str, Any] | None:
    """OTTL ParseJSON: an object or nothing; every JSON number becomes a double."""
    try:
        parsed = json.loads(text, parse_int=float, parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    if "\\u" in text:  # escaped lone surrogates: Go decodes them as U+FFFD, so must we
        parsed = _replace_lone_surrogates(parsed)
    return parsed


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _flatten(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """OTTL flatten(): nested keys joined with ".", array items as ``name.<index>``."""
    result: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                visit(f"{prefix}.{key}", inner)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                visit(f"{prefix}.{index}", inner)
        else:
            result[prefix] = value

    for key, value in attributes.items():
        visit(key, value)
    return result


def _promoted_level(attributes: Mapping[str, Any]) -> str | None:
    for key in _LEVEL_KEYS:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _promoted_number(text: str) -> int:
    """Substring tests in order; a later match overrides an earlier one; none -> info (9)."""
    lowered = text.lower()
    number = 0
    for needles, candidate in _PROMOTION_RULES:
        if any(needle in lowered for needle in needles):
            number = candidate
    return number or 9


def _inferred_level(body: str) -> tuple[str, int]:
    match = _INFER_KEYWORD.search(body[:256])
    if match is None:
        return "info", 9
    return _INFERRED[match.group(1).lower()]
