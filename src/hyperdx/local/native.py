"""ClickHouse ``Native`` blocks, the insert format chDB parses cheapest.

chDB inserted a 4k-row group of ``otel_logs`` rows for ~5.9 us of CPU per row from
512-row Native blocks against ~10.1 us from the same rows as JSONEachRow (measured
2026-11-30, BENCHMARKS.md "Local ingest, sixth round"): a Native block is already columnar,
so the insert copies columns instead of tokenising JSON. A block carries plain ``String``
and ``Map(String, String)`` where the table has ``LowCardinality``: ClickHouse converts them
on insert (measured as cheap as sending the dictionaries).

Layout (ClickHouse's ``NativeReader`` without a protocol revision): varint column count,
varint row count, then per column its name, its type name and its data. ``String``: per
value a varint byte length and the bytes; ``UInt8`` / ``Int64``: little-endian fixed width;
``Map(String, String)``: the rows' cumulative end offsets (UInt64), all keys, all values.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Block", "block", "encoded_string", "little_endian", "string", "varint"]


@dataclass(frozen=True)
class Block:
    """One encoded Native block of ``count`` rows, ready for ``INSERT ... FORMAT Native``
    with the column list ``columns`` (name, type) it was built with."""

    columns: tuple[tuple[str, str], ...]
    payload: bytes
    count: int


_SMALL = [bytes((n,)) for n in range(128)]
_LITTLE = sys.byteorder == "little"


def varint(value: int) -> bytes:
    """Unsigned LEB128, ClickHouse's length prefix."""
    if value < 128:
        return _SMALL[value]
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def string(text: str) -> bytes:
    """One ``String`` value: its UTF-8 length, then its UTF-8 bytes.

    Strings here come from protobuf (valid UTF-8, never a lone surrogate: upb refuses one)
    or from JSON the log transform parsed (lone surrogates replaced, as Go does).
    """
    data = text.encode("utf-8")
    size = len(data)
    return (_SMALL[size] if size < 128 else varint(size)) + data


def encoded_string(data: bytes) -> bytes:
    """One ``String`` value from its bytes (already UTF-8)."""
    size = len(data)
    return (_SMALL[size] if size < 128 else varint(size)) + data


def little_endian(values: array[int]) -> bytes:
    """A fixed-width integer column's bytes."""
    if not _LITTLE:  # pragma: no cover - ClickHouse's wire format is little-endian
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def block(columns: Sequence[tuple[str, str, bytes]], count: int) -> bytes:
    """A Native block of ``count`` rows from (name, type, encoded data) columns."""
    out = [varint(len(columns)), varint(count)]
    for name, kind, data in columns:
        out.append(string(name))
        out.append(string(kind))
        out.append(data)
    return b"".join(out)
