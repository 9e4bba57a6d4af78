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
``Map(String, String)``: the rows' cumulative end offsets (UInt64), all keys, all values;
``Array(T)``: the rows' cumulative end offsets (UInt64), then all elements as a ``T`` column.

Besides the format, the column builders the OTLP block mappings share (log_block,
span_block): id columns, and columns constant over a run of rows (a scope's).
"""

from __future__ import annotations

import sys
from array import array
from binascii import hexlify
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "EMPTY",
    "MAX_NS",
    "Block",
    "Run",
    "block",
    "encoded_string",
    "id_column",
    "id_value",
    "little_endian",
    "map_entries",
    "repeated_maps",
    "repeated_strings",
    "string",
    "varint",
]

#: An empty ``String`` value.
EMPTY = b"\x00"
#: DateTime64(9) ends at 2**63-1 ns; values.datetime64 clamps later instants to it.
MAX_NS = 2**63 - 1


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


def id_value(raw: bytes) -> bytes:
    """A trace or span id as its String value: :func:`~hyperdx.local.values.hex_id`'s text
    (empty for a missing or all-zero id), encoded without the intermediate str."""
    return encoded_string(hexlify(raw)) if any(raw) else EMPTY


def id_column(raws: list[bytes], mapped: Mapping[int, bytes], width: int) -> bytes:
    """A TraceId or SpanId column: :func:`id_value` of each raw id, or for the rows
    another mapping made (``mapped``: row index -> encoded value) their row's value.

    When every id is ``width`` bytes or missing, and none is all zeros (what SDKs send),
    the column is built in C-level passes: with no id missing, one ``hexlify`` of all the
    ids with the length byte of a ``2 * width``-character String as its separator (~0.1
    us an id instead of ~0.5); else each id's hex behind its length byte."""
    joined = b"".join(raws)
    if (
        not mapped
        and set(map(len, raws)) <= {0, width}
        and bytes(width) not in joined  # also when zeros span two ids: the slow path then
    ):
        if len(joined) == width * len(raws):
            length = bytes((2 * width,))
            return length + hexlify(joined, length, width) if joined else b""
        hexes = list(map(hexlify, raws))
        return b"".join(map(bytes.__add__, map(_SMALL.__getitem__, map(len, hexes)), hexes))
    return b"".join(
        mapped[index] if index in mapped else id_value(raw) for index, raw in enumerate(raws)
    )


def map_entries(mapping: Mapping[str, str]) -> tuple[int, bytes, bytes]:
    """One ``Map(String, String)`` value as (entries, encoded keys, encoded values)."""
    return (
        len(mapping),
        b"".join(map(string, mapping)),
        b"".join(map(string, mapping.values())),
    )


class Run:
    """Rows sharing constant columns (a scope's: resource and scope fields), encoded once:
    ``strings`` String values, ``maps`` :func:`map_entries` values; ``count`` rows."""

    __slots__ = ("count", "maps", "strings")

    def __init__(
        self, strings: tuple[bytes, ...], maps: tuple[tuple[int, bytes, bytes], ...]
    ) -> None:
        self.strings = strings
        self.maps = maps
        self.count = 0


def repeated_strings(runs: Sequence[Run], index: int) -> bytes:
    """A String column holding each run's ``strings[index]`` on its run's rows."""
    return b"".join(run.strings[index] * run.count for run in runs)


def repeated_maps(runs: Sequence[Run], index: int) -> bytes:
    """A Map column holding each run's ``maps[index]`` on its run's rows."""
    ends = array("Q")
    end = 0
    for run in runs:
        entries = run.maps[index][0]
        rows = run.count
        if entries:
            ends.extend(range(end + entries, end + entries * rows + 1, entries))
            end += entries * rows
        else:
            ends.extend([end] * rows)
    keys = b"".join(run.maps[index][1] * run.count for run in runs)
    values = b"".join(run.maps[index][2] * run.count for run in runs)
    return little_endian(ends) + keys + values
