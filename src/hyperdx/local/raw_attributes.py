"""OTLP requests decoded with attributes as raw ``KeyValue`` bytes, and those bytes mapped to
encoded ``Map(String, String)`` entries: what the Native block mappings (log_block,
span_block) share.

upb builds a Python object per ``KeyValue`` and per ``AnyValue`` read (~2.7 us of a log
record's ~7 us for four attributes); a bytes item costs a quarter of that, and pairs repeat
across a request's records, so each distinct pair is parsed and encoded once.
"""

from __future__ import annotations

from array import array
from itertools import chain
from operator import itemgetter
from types import ModuleType
from typing import Any, cast

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.resource.v1 import resource_pb2

from hyperdx.local.native import little_endian, string
from hyperdx.local.values import other_text

__all__ = [
    "MISSING",
    "Pairs",
    "attribute_columns",
    "encoded_entries",
    "map_column",
    "pair",
    "raw_request",
]


def raw_request(
    module: ModuleType,
    request: type[Message],
    raw_fields: dict[str, tuple[str, ...]],
    optional: tuple[str, ...] = (),
) -> type[Message]:
    """``request`` (an Export*ServiceRequest of the signal whose messages ``module``
    defines) with the fields ``raw_fields`` names (message name -> field names) declared
    ``bytes``, those also in ``optional`` as proto3 ``optional`` (a set but empty value
    stays told apart from an unset one).

    The same wire format (a KeyValue or AnyValue is a length-delimited field either way),
    so it parses the same request bytes and serialises back to them; built from the installed
    opentelemetry-proto descriptors, in a private pool, so it follows their version.
    """
    pool = descriptor_pool.DescriptorPool()
    for dependency_module in (common_pb2, resource_pb2):
        dependency = descriptor_pb2.FileDescriptorProto()
        dependency_module.DESCRIPTOR.CopyToProto(dependency)
        pool.Add(dependency)
    source = module.DESCRIPTOR.package
    package = f"hyperdx.local.raw_attributes.{source.rsplit('.', 2)[-2]}"
    signal = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(signal)
    signal.name = f"hyperdx/local/raw_attributes_{source.rsplit('.', 2)[-2]}.proto"
    signal.package = package
    signal.ClearField("options")
    signal.dependency[:] = [common_pb2.DESCRIPTOR.name, resource_pb2.DESCRIPTOR.name]
    field_type = descriptor_pb2.FieldDescriptorProto

    def rewrite(message: descriptor_pb2.DescriptorProto) -> None:
        raw = raw_fields.get(message.name, ())
        for field in message.field:
            if field.name in raw:
                field.type = field_type.TYPE_BYTES
                field.ClearField("type_name")
                if field.name in optional:
                    field.proto3_optional = True
                    field.oneof_index = len(message.oneof_decl)
                    message.oneof_decl.add(name=f"_{field.name}")
            elif field.type_name.startswith(f".{source}."):
                field.type_name = f".{package}.{field.type_name[len(source) + 2 :]}"
        for nested in message.nested_type:
            rewrite(nested)

    for message in signal.message_type:
        rewrite(message)
    outer = request.DESCRIPTOR.fields[0]  # resource_logs / resource_spans
    message = signal.message_type.add(name=request.DESCRIPTOR.name)
    message.field.add(
        name=outer.name,
        number=outer.number,
        label=field_type.LABEL_REPEATED,
        type=field_type.TYPE_MESSAGE,
        type_name=f".{package}.{outer.message_type.name}",
    )
    pool.Add(signal)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{package}.{request.DESCRIPTOR.name}")
    )


#: Raw KeyValue -> (encoded key, encoded value), or None if its value is nested.
Pairs = dict[bytes, "tuple[bytes, bytes] | None"]
#: A default no mapping holds (a cache miss, told apart from a cached None).
MISSING: Any = object()

_LEN_KEY = 0x0A  # KeyValue.key (field 1) and AnyValue.string_value (field 1): length-delimited
_LEN_VALUE = 0x12  # KeyValue.value (field 2): length-delimited


def pair(raw: bytes, known: dict[str, bytes]) -> tuple[bytes, bytes] | None:
    """A raw KeyValue's (encoded key, encoded value) as attribute_map maps it; None for an
    array or map value. A malformed pair raises DecodeError (the request's 400).

    A short key with a short string value, each field once (what SDKs write), is read from
    its bytes: they hold the key and the string as Native Strings already (the same LEB128
    length prefix). Its other bytes (tags, lengths) are ASCII, so the whole pair decodes as
    UTF-8 exactly when the key and the string do: upb's check, in one call."""
    size = len(raw)
    key_size = raw[1] if size > 5 else 128
    if key_size < 128 and raw[0] == _LEN_KEY and size > 5 + key_size:
        text_size = raw[5 + key_size]
        if (
            text_size < 126  # else the value's length takes two bytes
            and raw[2 + key_size] == _LEN_VALUE
            and raw[3 + key_size] == text_size + 2
            and raw[4 + key_size] == _LEN_KEY
            and size == 6 + key_size + text_size
        ):
            try:
                raw.decode()
            except UnicodeDecodeError:
                pass  # the parse below raises protobuf's own DecodeError
            else:
                return raw[1 : 2 + key_size], raw[5 + key_size :]
    parsed = KeyValue.FromString(raw)
    key = parsed.key
    value = parsed.value
    item = value.string_value
    if not item:
        number = value.int_value
        if number:
            item = str(number)
        else:
            other = other_text(value)
            if other is None:
                return None
            item = other
    encoded_key = known.get(key)
    if encoded_key is None:
        encoded_key = known[key] = string(key)
    encoded = known.get(item)
    if encoded is None:
        encoded = known[item] = string(item)
    return encoded_key, encoded


def map_column(
    raws: list[bytes], ends: array[int], pairs: Pairs, known: dict[str, bytes]
) -> bytes | None:
    """A ``Map(String, String)`` column of rows whose raw attributes are ``raws`` (all rows'
    in turn, row ``i``'s ending at ``ends[i]``), mapped in C-level passes over the request
    rather than a Python loop per row; None if :func:`attribute_columns` would refuse a
    row (a nested value, a repeated key in a row)."""
    for raw in dict.fromkeys(raws):
        if raw not in pairs:
            pairs[raw] = pair(raw, known)
    mapped = list(map(pairs.__getitem__, raws))
    if None in mapped:
        return None
    entries = cast("list[tuple[bytes, bytes]]", mapped)
    keys = list(map(itemgetter(0), entries))
    # each distinct sequence of keys (spans of one kind share theirs) checked once
    rows = set(map(tuple, map(keys.__getitem__, map(slice, chain((0,), ends), ends))))
    if any(len(set(row)) != len(row) for row in rows):
        return None
    return little_endian(ends) + b"".join(keys) + b"".join(map(itemgetter(1), entries))


def attribute_columns(
    raw_attributes: tuple[bytes, ...], pairs: Pairs, known: dict[str, bytes]
) -> tuple[tuple[bytes, ...], tuple[bytes, ...]] | None:
    """Raw attributes -> (encoded keys, encoded values) of their Map entries, or None when
    :func:`~hyperdx.local.values.attribute_map`'s rarer rules apply (a nested value: JSON
    text; a repeated key: the last value at the first place), for the caller to map them
    its own way. ``pairs`` and ``known`` (text -> encoded String) are caches kept over a
    request."""
    keys: list[bytes] = []
    values: list[bytes] = []
    for raw in raw_attributes:
        entry = pairs.get(raw, MISSING)
        if entry is MISSING:
            entry = pairs[raw] = pair(raw, known)
        if entry is None:
            return None
        keys.append(entry[0])
        values.append(entry[1])
    if len(keys) > 1 and len(set(keys)) != len(keys):
        return None
    return tuple(keys), tuple(values)


def encoded_entries(
    mapping: dict[str, str], known: dict[str, bytes]
) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """A Map value another mapping made (a transformed record's, a span's nested or
    repeated attributes) as (encoded keys, encoded values), through ``known``."""
    keys = []
    values = []
    for key, value in mapping.items():
        encoded = known.get(key)
        if encoded is None:
            encoded = known[key] = string(key)
        keys.append(encoded)
        encoded = known.get(value)
        if encoded is None:
            encoded = known[value] = string(value)
        values.append(encoded)
    return tuple(keys), tuple(values)
