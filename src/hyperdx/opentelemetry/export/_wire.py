"""Protobuf wire-format primitives for OTLP, written for CPython speed.

The stock OTLP encoder builds one protobuf object per span, attribute and value (about 21 us
per span with three attributes). Emitting the bytes directly, with the fields in field-number
order and proto3's presence rules, produces output byte-identical to
``SerializeToString()`` of the stock messages for a fraction of the Python calls. Repeated
attribute pairs (``http.method=GET``...) are cached as finished bytes.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

_logger = logging.getLogger(__name__)

_SMALL = [bytes((i,)) for i in range(128)]
_U64 = (1 << 64) - 1
pack_fixed64 = struct.Struct("<Q").pack
pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack

# Bounded caches of encoded KeyValue bytes: attribute keys and string values repeat a lot.
_KV_CACHE_MAX = 8192
_CACHE_VALUE_MAX_LEN = 64  # long values are usually unique (URLs with ids, messages)
# Status codes, small enums and ports repeat (the server's own port always, a client's for
# each request on its keep-alive connection); sizes and counters mostly do not.
_CACHE_INT_MAX = 65536
# One cache per field tag (attributes are field 1, 3, 4, 6 or 9 depending on the message), so
# a hit is the finished field, tag included.
_kv_caches: dict[bytes, dict[tuple[str, Any], bytes]] = {}
_key_cache: dict[str, bytes] = {}


class UnencodableValueError(TypeError):
    """An attribute value type OTLP cannot represent (the stock encoder skips these too)."""


def varint(n: int) -> bytes:
    """Unsigned LEB128; negative int64 values use their 64-bit two's complement."""
    if 0 <= n < 128:
        return _SMALL[n]
    if 0 < n < 16384:  # two bytes: ports, status codes, lengths
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    n &= _U64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_bytes(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 128 else varint(n)) + payload


def string_field(tag: bytes, value: str | None) -> bytes:
    """A proto3 string field; empty or None is omitted, as the stock serializer does."""
    if not value:
        return b""
    return field_bytes(tag, value.encode("utf-8"))


def any_value(value: Any) -> bytes:
    """The body of an ``AnyValue`` message (oneof members are always present)."""
    if isinstance(value, str):
        return field_bytes(b"\x0a", value.encode("utf-8"))
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return field_bytes(b"\x3a", value)
    if isinstance(value, Sequence):
        return field_bytes(b"\x2a", b"".join([field_bytes(b"\x0a", any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        return field_bytes(
            b"\x32",
            b"".join([field_bytes(b"\x0a", key_value(str(k), v)) for k, v in value.items()]),
        )
    raise UnencodableValueError(f"Invalid type {type(value)} of value {value}")


def _key_field(key: str) -> bytes:
    kb = field_bytes(b"\x0a", key.encode("utf-8"))
    if len(_key_cache) >= _KV_CACHE_MAX:
        _key_cache.clear()
    _key_cache[key] = kb
    return kb


def key_value(key: str, value: Any) -> bytes:
    """The body of a ``KeyValue`` message."""
    kb = _key_cache.get(key)
    if kb is None:
        kb = _key_field(key)
    return kb + field_bytes(b"\x12", any_value(value))


def attributes(tag: bytes, attrs: Mapping[str, Any] | None) -> list[bytes]:
    """Repeated ``KeyValue`` fields with ``tag``; unencodable values are skipped and logged,
    matching the stock encoder."""
    out: list[bytes] = []
    if attrs:
        attributes_into(out, tag, attrs)
    return out


_CACHED_TYPES = frozenset({str, int})  # the value types the caches hold (exact types)


def attributes_into(
    out: list[bytes], tag: bytes, attrs: Mapping[str, Any], str_int: bool = False
) -> None:
    """:func:`attributes`, appending to ``out`` (saves a list per message on the hot path).

    ``str_int``: the caller knows every value is a ``str`` or an ``int``."""
    cache = _kv_caches.get(tag)
    if cache is None:
        cache = _kv_caches[tag] = {}
    items = attrs.items()
    if not str_int and not _CACHED_TYPES.issuperset(map(type, attrs.values())):
        for key, value in items:
            field = _field(cache, tag, key, value)
            if field is not None:
                out.append(field)
        return
    # Only str and int values: the (key, value) items are the cache keys as they are, so every
    # attribute is looked up in C (no bool or float can match an int's entry); only the misses
    # (a peer port, a target with an id) are encoded one by one.
    found: list[Any] = list(map(cache.get, items))
    misses = found.count(None)
    if misses:
        pairs = list(items)
        at = -1
        for _ in range(misses):
            at = found.index(None, at + 1)
            key, value = pairs[at]
            found[at] = _field(cache, tag, key, value) or b""  # b"": skipped (unencodable)
    out.extend(found)


_int_prefixes: dict[tuple[bytes, str, int], bytes] = {}


def _int_prefix(tag: bytes, key: str, size: int) -> bytes:
    """A KeyValue field with an int value of a ``size``-byte varint, without the varint."""
    kv_len = len(key_value(key, 0)) - 2 + 1 + size  # key field + 0x12, len, 0x18 + varint
    kb = _key_cache[key]
    prefix = tag + varint(kv_len) + kb + b"\x12" + _SMALL[1 + size] + b"\x18"
    if len(_int_prefixes) >= _KV_CACHE_MAX:
        _int_prefixes.clear()
    _int_prefixes[(tag, key, size)] = prefix
    return prefix


def _field(cache: dict[tuple[str, Any], bytes], tag: bytes, key: str, value: Any) -> bytes | None:
    """One attribute's finished field (tag included); None when it cannot be encoded."""
    vt = type(value)
    if vt is int and not 0 <= value < _CACHE_INT_MAX:
        # Sizes, counters: mostly unique, so encode directly (no cache churn): the
        # field up to the value (tag, lengths, key) only depends on the value's varint size.
        vb = varint(value)  # at most 10 bytes
        prefix = _int_prefixes.get((tag, key, len(vb)))
        if prefix is None:
            prefix = _int_prefix(tag, key, len(vb))
        return prefix + vb
    if (vt is str and len(value) <= _CACHE_VALUE_MAX_LEN) or vt is int:
        # Exact types only: True == 1 and 1.0 == 1 must not share an entry.
        ck = (key, value)
        field = cache.get(ck)
        if field is None:
            field = field_bytes(tag, key_value(key, value))
            if len(cache) >= _KV_CACHE_MAX:
                cache.clear()
            cache[ck] = field
        return field
    try:
        return field_bytes(tag, key_value(key, value))
    except (UnencodableValueError, UnicodeEncodeError) as error:
        _logger.error("Failed to encode key %s: %s", key, error)
        return None
