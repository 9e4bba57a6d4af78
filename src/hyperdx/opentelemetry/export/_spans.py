"""OTLP trace encoding straight to bytes (``ExportTraceServiceRequest``).

Mirrors ``opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`` field for
field, so the result is byte-identical to the stock ``SerializeToString()`` (tests assert it).
Spans are encoded one at a time (:func:`encode_span`) so that the exporter can encode a batch
in slices and let other threads take the GIL in between; :func:`assemble` then groups the
finished span bytes by resource and scope.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import is_
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import DEFAULT_TRACE_STATE, SpanContext, TraceFlags, TraceState

from hyperdx.opentelemetry.fast_span import _UNSET_STATUS
from hyperdx.opentelemetry.fast_span import _Span as _LIVE_SPAN

from ._wire import (
    attributes,
    attributes_into,
    field_bytes,
    pack_fixed32,
    pack_fixed64,
    string_field,
    varint,
)

_FLAGS_HAS_IS_REMOTE = 0x100
_FLAGS_IS_REMOTE = 0x200
_FLAGS_LOCAL = b"\x85\x01" + pack_fixed32(_FLAGS_HAS_IS_REMOTE)
_FLAGS_REMOTE = b"\x85\x01" + pack_fixed32(_FLAGS_HAS_IS_REMOTE | _FLAGS_IS_REMOTE)
_KIND = [b"\x30" + varint(v + 1) for v in range(5)]  # SDK SpanKind 0..4 -> proto 1..5


def _status(status: Any) -> bytes:
    if status is None:
        return b""
    body = string_field(b"\x12", status.description)
    code = status.status_code.value
    if code:
        body += b"\x18" + varint(code)
    return field_bytes(b"\x7a", body)


def _events(events: Sequence[Any]) -> list[bytes]:
    out = []
    for ev in events:
        parts = []
        if ev.timestamp:
            parts.append(b"\x09" + pack_fixed64(ev.timestamp))
        parts.append(string_field(b"\x12", ev.name))
        parts.extend(attributes(b"\x1a", ev.attributes))
        if ev.dropped_attributes:
            parts.append(b"\x20" + varint(ev.dropped_attributes))
        out.append(field_bytes(b"\x5a", b"".join(parts)))
    return out


def _links(links: Sequence[Any]) -> list[bytes]:
    out = []
    for link in links:
        ctx = link.context
        parts = [
            b"\x0a\x10" + ctx.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + ctx.span_id.to_bytes(8, "big"),
        ]
        parts.extend(attributes(b"\x22", link.attributes))
        dropped = link.dropped_attributes
        if dropped:
            parts.append(b"\x28" + varint(dropped))
        flags = _FLAGS_HAS_IS_REMOTE | (_FLAGS_IS_REMOTE if ctx.is_remote else 0)
        parts.append(b"\x35" + pack_fixed32(flags))
        out.append(field_bytes(b"\x6a", b"".join(parts)))
    return out


_STATUS_UNSET = b"\x7a\x00"
_EMPTY_TRACE_STATE = DEFAULT_TRACE_STATE


def _context_is_tuple() -> bool:
    """Whether a SpanContext is the tuple (trace_id, span_id, is_remote, trace_flags,
    trace_state, ...) its properties read (true of every API release so far)."""
    probe = SpanContext(3, 5, True, TraceFlags(1), TraceState([("k", "v")]))
    fields = (probe.trace_id, probe.span_id, probe.is_remote, probe.trace_flags)
    return isinstance(probe, tuple) and all(
        a is b for a, b in zip(probe[:5], (*fields, probe.trace_state), strict=True)
    )


_CONTEXT_IS_TUPLE = _context_is_tuple()


_IDS = struct.Struct(">2sQQ2sQ").pack  # trace_id (16 bytes as two halves) + span_id
_TIMES = struct.Struct("<cQcQ").pack  # start + end, both fixed64
_LOW64 = (1 << 64) - 1
_NAMES_MAX = 1024
_names: dict[str, bytes] = {}


def encode_span(span: ReadableSpan) -> bytes:
    """One ``Span`` message body (without its tag and length)."""
    if type(span) is ReadableSpan or type(span) is _LIVE_SPAN:
        # What the SDK hands to on_end (or fast_span's ended span itself): read the slots
        # directly, skipping the properties (and the copies some make: events/links -> tuple,
        # attributes -> MappingProxyType).
        attrs: Any = span._attributes
        events: Any = span._events
        links: Any = span._links
        # Bounded collections carry their dropped count (a limit of 0 drops everything, so
        # these are read even when the collection is empty).
        d_attrs = (
            attrs.dropped if type(attrs) is BoundedAttributes else getattr(attrs, "dropped", 0)
        )
        if type(events) is BoundedList and type(links) is BoundedList:
            d_events, d_links = events.dropped, links.dropped
            # The SDK span's own lists: their length without BoundedList.__len__'s call.
            if not events._dq:  # type: ignore[attr-defined]
                events = ()
            if not links._dq:  # type: ignore[attr-defined]
                links = ()
        else:
            d_events = getattr(events, "dropped", 0)
            d_links = getattr(links, "dropped", 0)
        str_int = False
        if type(attrs) is BoundedAttributes and type(attrs._dict) is dict:
            # Its plain dict (same keys, same order) iterates in C; BoundedAttributes' own
            # __len__ and items() are Python-level calls (a __getitem__ per key).
            attrs = attrs._dict
            # fast_span's span knows when every value is a str or an int (no type check).
            str_int = type(span) is _LIVE_SPAN and span._hyperdx_str_int
        ctx: Any = span._context
        if type(ctx) is SpanContext and _CONTEXT_IS_TUPLE:
            tid, sid, ts = ctx[0], ctx[1], ctx[4]  # the properties' values, without the calls
        else:
            tid, sid, ts = ctx.trace_id, ctx.span_id, ctx.trace_state
        return _encode(
            tid,
            sid,
            ts,
            span._parent,
            span._name,
            span._kind,
            span._start_time,
            span._end_time,
            attrs,
            str_int,
            span._status,
            d_attrs,
            events,
            d_events,
            links,
            d_links,
        )
    ctx = span.context
    return _encode(
        ctx.trace_id,
        ctx.span_id,
        ctx.trace_state,
        span.parent,
        span.name,
        span.kind,
        span.start_time,
        span.end_time,
        span.attributes,
        False,
        span.status,
        span.dropped_attributes,
        span.events,
        span.dropped_events,
        span.links,
        span.dropped_links,
    )


# (resource, scope or None, trace id, span id, trace state, parent, name, kind, start, end,
# attribute dict, str_int, status, end check or None, maxlen, max_value_len, 4 URL fields): one
# tuple, whose members other than the resource, the scope and the attribute dict are ints,
# strs, None or long-lived shared objects.
Snapshot = tuple[Any, ...]
# (kind, attribute dict, maxlen, max_value_len, URL fields or None) -> None (export the span
# as it is) or (the attributes to export instead, their dropped count).
# The URL fields of a span whose on_start left none (no real attribute value is this object).
_UNSEEN = (object(), None, None, None)
EndCheck = Callable[[Any, dict[str, Any], Any, Any, Any], "tuple[dict[str, Any], int] | None"]


def snapshot(span: Any, check: EndCheck | None = None) -> Snapshot | None:
    """What :func:`encode_span` reads from an ended ``fast_span`` span, with its resource and
    scope, in one tuple, when the span is the usual one (no events, no links, nothing dropped);
    else None.

    ``check``: an end-of-span check deferred to the export thread (the hygiene processor's
    :meth:`~hyperdx.opentelemetry.hygiene.SpanHygieneProcessor.end_check`), queued with what it
    reads: the attribute limits and the four URL fields ``on_start`` left
    (``_hyperdx_url_fields``, flattened, so that the tuple stays the one object the snapshot
    keeps alive).

    The batch processor queues this instead of the encoded bytes, so that the encoding runs on
    the export thread, a batch at a time. Valid because an ended span is frozen: the SDK
    ignores attribute, status, name, event and link changes once ``_end_time`` is set (and
    marks the attribute mapping immutable), and every member held here is immutable but the
    attribute dict, which only the span writes to. One flat tuple: a queued span keeps one
    GC-tracked object alive (the tuple; the ids are read out of the span context), as the
    encoded item did, so the young-generation collections do not come more often."""
    attrs = span._attributes
    events = span._events
    links = span._links
    ctx = span._context
    if (
        type(attrs) is not BoundedAttributes
        or type(events) is not BoundedList
        or type(links) is not BoundedList
        or type(ctx) is not SpanContext
        or not _CONTEXT_IS_TUPLE
        or attrs.dropped
        or events._dq  # type: ignore[attr-defined]
        or links._dq  # type: ignore[attr-defined]
        or events.dropped
        or links.dropped
    ):
        return None
    plain = attrs._dict
    if type(plain) is not dict:
        return None
    live = type(span) is _LIVE_SPAN
    seen = span._hyperdx_url_fields if live and check is not None else None
    url, full, target, query = _UNSEEN if seen is None else seen
    return (
        span._resource,
        span._instrumentation_scope or None,
        ctx[0],
        ctx[1],
        ctx[4],
        span._parent,
        span._name,
        span._kind,
        span._start_time,
        span._end_time,
        plain,
        live and span._hyperdx_str_int,
        span._status,
        check,
        attrs.maxlen,
        attrs.max_value_len,
        url,
        full,
        target,
        query,
    )


def encode_snapshot(fields: Snapshot) -> bytes:
    """:func:`encode_span` of the span :func:`snapshot` was taken from (same bytes), after its
    deferred end check if it was queued with one."""
    (_, _, tid, sid, ts, parent, name, kind, start, end, attrs, str_int, status, check) = fields[
        :14
    ]
    dropped = 0
    if check is not None:
        seen = fields[16:20]
        checked = check(kind, attrs, fields[14], fields[15], None if seen == _UNSEEN else seen)
        if checked is not None:
            attrs, dropped = checked
    return _encode(
        tid, sid, ts, parent, name, kind, start, end, attrs, str_int, status, dropped, (), 0, (), 0
    )


def _encode(
    tid: int,
    sid: int,
    ts: Any,
    parent: Any,
    name: str,
    kind: Any,
    start: int | None,
    end: int | None,
    attrs: Any,
    str_int: bool,
    status: Any,
    d_attrs: int,
    events: Any,
    d_events: int,
    links: Any,
    d_links: int,
) -> bytes:
    """The ``Span`` body from its fields (``attrs``: a mapping; ``str_int``: every value is
    known to be a ``str`` or an ``int``; ``events``/``links``: ``()`` when empty)."""
    parts = [_IDS(b"\x0a\x10", tid >> 64, tid & _LOW64, b"\x12\x08", sid)]
    if ts is not _EMPTY_TRACE_STATE and ts:  # the shared empty one, without TraceState.__len__
        parts.append(string_field(b"\x1a", ",".join([f"{k}={v}" for k, v in ts.items()])))
    if parent:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    if name:
        field = _names.get(name)  # span names are low-cardinality ("GET /users/{id}")
        if field is None:
            field = field_bytes(b"\x2a", name.encode("utf-8"))
            if len(_names) >= _NAMES_MAX:
                _names.clear()
            _names[name] = field
        parts.append(field)
    parts.append(_KIND[kind._value_])
    if start and end:
        parts.append(_TIMES(b"\x39", start, b"\x41", end))
    elif start:
        parts.append(b"\x39" + pack_fixed64(start))
    elif end:
        parts.append(b"\x41" + pack_fixed64(end))
    if attrs:
        attributes_into(parts, b"\x4a", attrs, str_int)
    if d_attrs:
        parts.append(b"\x50" + varint(d_attrs))
    if events:
        parts.extend(_events(events))
    if d_events:
        parts.append(b"\x60" + varint(d_events))
    if links:
        parts.extend(_links(links))
    if d_links:
        parts.append(b"\x70" + varint(d_links))
    if status is _UNSET_STATUS or (
        status is not None and status.description is None and not status.status_code._value_
    ):
        parts.append(_STATUS_UNSET)
    else:
        parts.append(_status(status))
    parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return b"".join(parts)


def encode_resource(resource: Any) -> bytes:
    """``Resource`` body: attributes only, as the stock encoder writes it."""
    return b"".join(attributes(b"\x0a", resource.attributes))


def encode_scope(scope: Any) -> bytes:
    """``InstrumentationScope`` body; ``None`` encodes as an empty (but present) scope."""
    if scope is None:
        return b""
    parts = [string_field(b"\x0a", scope.name), string_field(b"\x12", scope.version)]
    parts.extend(attributes(b"\x1a", scope.attributes))
    return b"".join(parts)


def assemble(
    groups: dict[Any, dict[Any, list[bytes]]],
    *,
    resource_field: bytes = b"\x0a",
    item_field: bytes = b"\x12",
) -> bytes:
    """Build the export request from encoded items grouped ``{resource: {scope: [item]}}``.

    The same nesting (Resource*{resource=1, Scope*=2, schema_url=3} with Scope*{scope=1,
    items=2, schema_url=3}) serves traces and logs, so log encoding reuses it.
    """
    # One flat list and one join: nesting by joining each level would copy the whole
    # batch once per level (three copies of ~250 KB for 512 spans).
    out: list[bytes] = []
    for resource, scopes in groups.items():
        rparts = [field_bytes(b"\x0a", _cached_resource(resource))]
        for scope, items in scopes.items():
            sparts = [field_bytes(b"\x0a", _cached_scope(scope))]
            sparts.extend(_framed(item_field, items))
            if scope is not None and scope.schema_url:
                sparts.append(string_field(b"\x1a", scope.schema_url))
            rparts.append(b"\x12" + varint(sum(map(len, sparts))))
            rparts.extend(sparts)
        rparts.append(string_field(b"\x1a", resource.schema_url))
        out.append(resource_field + varint(sum(map(len, rparts))))
        out.extend(rparts)
    return b"".join(out)


class _Prefixes(dict[int, bytes]):
    """Field tag + length varint by payload length, computed on first use (C-level hits)."""

    def __init__(self, tag: bytes) -> None:
        super().__init__()
        self.tag = tag

    def __missing__(self, n: int) -> bytes:
        if len(self) >= _PREFIXES_MAX:
            self.clear()
        prefix = self[n] = self.tag + varint(n)
        return prefix


_PREFIXES_MAX = 4096
_prefixes: dict[bytes, _Prefixes] = {}


def _framed(tag: bytes, items: list[bytes]) -> list[bytes]:
    """``[tag + len(item), item, ...]``: each item as a length-delimited field, without a
    Python-level call or a copy of the item per item (what :func:`field_bytes` in a loop
    costs the exporter thread: ~1 us per span)."""
    prefixes = _prefixes.get(tag)
    if prefixes is None:
        prefixes = _prefixes[tag] = _Prefixes(tag)
    out: list[bytes] = [b""] * (2 * len(items))
    out[::2] = map(prefixes.__getitem__, map(len, items))
    out[1::2] = items
    return out


# Resources and scopes are long-lived and shared by every item: encode each once. The SDK
# hashes them by value (a JSON dump per hash for Resource), so caches and per-batch grouping
# key on identity and hash an object only the first time it is seen.
_CACHE_MAX = 256
_resource_cache: dict[int, tuple[Any, bytes]] = {}
_scope_cache: dict[int, tuple[Any, bytes]] = {}


def _cached(cache: dict[int, tuple[Any, bytes]], obj: Any, encode: Any) -> bytes:
    hit = cache.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    enc: bytes = encode(obj)
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[id(obj)] = (obj, enc)  # the strong reference keeps id(obj) from being reused
    return enc


_resource_attrs: dict[int, Any] = {}


def _cached_resource(resource: Any) -> bytes:
    """A forked worker's identity replaces the shared Resource's attribute mapping in place
    (forking.py), so an entry is valid only for the mapping it was encoded from."""
    attrs = getattr(resource, "_attributes", None)
    if _resource_attrs.get(id(resource)) is not attrs:
        _resource_cache.pop(id(resource), None)
        if len(_resource_attrs) >= _CACHE_MAX:
            _resource_attrs.clear()
        _resource_attrs[id(resource)] = attrs
    return _cached(_resource_cache, resource, encode_resource)


def _cached_scope(scope: Any) -> bytes:
    return _cached(_scope_cache, scope, encode_scope)


def group(items: Sequence[Any], encoded: Sequence[bytes]) -> dict[Any, dict[Any, list[bytes]]]:
    """Group encoded items by (resource, scope) in first-seen order, merging equal objects,
    exactly like the stock encoder's nested defaultdict, but hashing each distinct object once
    per batch instead of once per item."""
    return group_encoded(
        [
            (item.resource, item.instrumentation_scope or None, enc)
            for item, enc in zip(items, encoded, strict=True)
        ]
    )


def group_encoded(
    items: Sequence[tuple[Any, Any, bytes]],
) -> dict[Any, dict[Any, list[bytes]]]:
    """:func:`group` for items encoded at hand-off: ``(resource, scope, bytes)`` triples."""
    if items:
        # The usual batch: one resource and one scope (identity), checked and split in C.
        all_resources, all_scopes, encoded = zip(*items, strict=True)
        first, first_scope = all_resources[0], all_scopes[0]
        if all(map(is_, all_resources, repeat(first))) and all(
            map(is_, all_scopes, repeat(first_scope))
        ):
            return {first: {first_scope: list(encoded)}}
    groups: dict[Any, dict[Any, list[bytes]]] = {}
    scopes_by_id: dict[int, dict[Any, list[bytes]]] = {}
    list_by_ids: dict[tuple[int, int], list[bytes]] = {}
    for resource, scope, enc in items:
        ids = (id(resource), id(scope))
        lst = list_by_ids.get(ids)
        if lst is None:
            scopes = scopes_by_id.get(ids[0])
            if scopes is None:
                scopes = groups.get(resource)
                if scopes is None:
                    scopes = groups[resource] = {}
                scopes_by_id[ids[0]] = scopes
            lst = scopes.get(scope)
            if lst is None:
                lst = scopes[scope] = []
            list_by_ids[ids] = lst
        lst.append(enc)
    return groups


def encode_spans_bytes(spans: Sequence[ReadableSpan]) -> bytes:
    """Whole-batch convenience: the serialized ``ExportTraceServiceRequest``."""
    return assemble(group(spans, [encode_span(s) for s in spans]))
