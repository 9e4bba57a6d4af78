"""SDK spans started, and given attributes, without re-validating values that are already clean.

The SDK's ``Tracer.start_span`` cleans every start attribute (``_clean_attribute_value``, then
one ``_setitem_locked`` call per key): about a third of a span's creation cost for the dozen
``str``/``int`` attributes of an HTTP server span, all built by our own instrumentation.
:func:`start_span` takes the same steps as ``Tracer.start_span`` (sampler, ids, span context,
the SDK's own ``_Span`` constructor and ``start``, so processors' ``on_start`` sees the
attributes), but when the attributes are all of plain types (non-empty str keys; str, int,
bool, float values) within the span limits, which the cleaning would store unchanged and in the
same order, they are copied into the span's attribute storage at once. Anything else (another
value type, more attributes than the limit, a string over the length limit) is cleaned by the
SDK as before. For the SDK's default sampler (parent-based always-on) and always-on, the
decision they would return for a root or sampled-parent span is taken without building a
``SamplingResult``; every other sampler is called.

The span is a :class:`_Span`, a subclass of the SDK's class with the same name and state. With
clean attributes its fields are set one by one (:func:`_new_span`: what ``Span.__init__``,
``ReadableSpan.__init__``, ``BoundedAttributes`` and ``BoundedList`` set, without their
keyword-argument chain; no event or link yet, so it holds shared empty lists and gets its own
at its first ``add_event`` / ``add_link``). Its ``set_attribute`` stores a plain value directly,
and its ``end`` hands the span itself to a composite processor that asks for it (``end_live``, see
``traces.HyperDXSpanProcessors``) instead of building a ``ReadableSpan`` copy.

Relies on SDK internals, verified for opentelemetry-sdk >=1.45.1,<2 (the pinned range): the
``Tracer`` fields ``sampler``, ``id_generator``, ``resource``, ``span_processor``,
``instrumentation_info``, ``_span_limits``, ``_instrumentation_scope``, ``_tracer_metrics`` and
``_is_enabled()``; ``_Span``'s constructor, ``end`` and fields; ``BoundedAttributes._dict``,
``maxlen``, ``max_value_len``, ``_immutable``; ``BoundedList``'s fields; the API's
``SpanContext.__new__``; ``RandomIdGenerator``'s methods (inlined as ``random.getrandbits``
for that exact class); ``Tracer._tracer_config.is_enabled``; ``NoOpTracerMetrics.start_span``
returning the module's ``noop`` (not called); ``Decision.RECORD_AND_SAMPLE`` sampling and
recording. The names each SDK function involved uses are
fingerprinted at import: if a release changes any of them, the fast paths switch themselves off
(spans take ``tracer.start_span`` / ``set_attribute``) and ``tests/core/test_fast_span.py``
fails, naming the function to re-verify.
"""

from __future__ import annotations

import inspect
import random as _random
import threading
import zlib
from collections.abc import Callable, Mapping
from time import time_ns
from typing import Any, cast

from opentelemetry import attributes as sdk_attributes
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
from opentelemetry.sdk.trace._tracer_metrics import noop as _tracer_metrics_noop
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, DEFAULT_ON, Decision
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

_SDK_TRACER = sdk_trace.Tracer
_NO_TRACER_METRICS = NoOpTracerMetrics  # a provider without tracer metrics (the default)
_NO_END_METRICS = _tracer_metrics_noop  # what its start_span returns: a no-op
_RANDOM_IDS = RandomIdGenerator  # ids from random.getrandbits (read per call: patchable)
_SDK_SPAN = sdk_trace._Span  # the class Tracer.start_span instantiates
_BOUNDED = sdk_attributes.BoundedAttributes
_LOCK = threading.Lock
_INVALID_PARENT = trace_api.INVALID_SPAN.get_span_context()
_DEFAULT_TRACE_STATE = trace_api.DEFAULT_TRACE_STATE
_TRACE_ID_MAX = 2**128 - 1
_SPAN_ID_MAX = 2**64 - 1
_new_tuple = tuple.__new__
# ReadableSpan's default status (one shared Status(UNSET)), as every new SDK span holds it.
_UNSET_STATUS = inspect.signature(sdk_trace.ReadableSpan.__init__).parameters["status"].default
_DEFAULT_ON = DEFAULT_ON  # the SDK's default (OTEL_TRACES_SAMPLER unset): ParentBased(ALWAYS_ON)
_ALWAYS_ON = ALWAYS_ON
_SAMPLE = Decision.RECORD_AND_SAMPLE
_PLAIN_VALUES = frozenset({str, int, bool, float})  # what _clean_attribute_value returns as is
_STR_ONLY = frozenset({str})
_FLAGS = {  # TraceFlags are immutable ints: one of each, as Tracer.start_span computes them
    (sampled, random): TraceFlags(
        (TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        | (TraceFlags.RANDOM_TRACE_ID if random else TraceFlags.DEFAULT)
    )
    for sampled in (False, True)
    for random in (False, True)
}
_SAMPLED_FLAGS = (_FLAGS[True, False], _FLAGS[True, True])  # by random: no tuple key


def _fingerprint(function: Callable[..., Any]) -> int:
    """CRC of the global, attribute and local names a function's code uses: stable across
    Python versions, changed by any SDK edit that reads or writes something new."""
    code: Any = function.__code__
    return zlib.crc32(" ".join(sorted(set(code.co_names) | set(code.co_varnames))).encode())


def fingerprints() -> dict[str, int]:
    """The installed SDK's fingerprints of every function the fast paths mirror or bypass."""
    return {
        "Tracer.start_span": _fingerprint(_SDK_TRACER.start_span),
        "Span.__init__": _fingerprint(sdk_trace.Span.__init__),
        "Span.start": _fingerprint(sdk_trace.Span.start),
        "Span.set_attribute": _fingerprint(sdk_trace.Span.set_attribute),
        "Span.set_attributes": _fingerprint(sdk_trace.Span.set_attributes),
        "BoundedAttributes.__init__": _fingerprint(_BOUNDED.__init__),
        "BoundedAttributes.__setitem__": _fingerprint(_BOUNDED.__setitem__),
        "BoundedAttributes._set_items": _fingerprint(_BOUNDED._set_items),
        "BoundedAttributes._setitem_locked": _fingerprint(_BOUNDED._setitem_locked),
        "_clean_attribute_value": _fingerprint(sdk_attributes._clean_attribute_value),
        "ReadableSpan.__init__": _fingerprint(sdk_trace.ReadableSpan.__init__),
        "Span._new_events": _fingerprint(sdk_trace.Span._new_events),
        "Span._new_links": _fingerprint(sdk_trace.Span._new_links),
        "Span.end": _fingerprint(sdk_trace.Span.end),
        "Span._readable_span": _fingerprint(sdk_trace.Span._readable_span),
        "BoundedList.__init__": _fingerprint(BoundedList.__init__),
        "SpanContext.__new__": _fingerprint(SpanContext.__new__),
        "SynchronousMultiSpanProcessor.on_end": _fingerprint(
            sdk_trace.SynchronousMultiSpanProcessor.on_end
        ),
        "Tracer._is_enabled": _fingerprint(_SDK_TRACER._is_enabled),
        "Span.is_recording": _fingerprint(sdk_trace.Span.is_recording),
        "NoOpTracerMetrics.start_span": _fingerprint(_NO_TRACER_METRICS.start_span),
        "Decision.is_sampled": _fingerprint(Decision.is_sampled),
        "Decision.is_recording": _fingerprint(Decision.is_recording),
        "RandomIdGenerator.generate_trace_id": _fingerprint(_RANDOM_IDS.generate_trace_id),
        "RandomIdGenerator.generate_span_id": _fingerprint(_RANDOM_IDS.generate_span_id),
        "RandomIdGenerator.is_trace_id_random": _fingerprint(_RANDOM_IDS.is_trace_id_random),
        # The only writers of a span's event and link lists (see _shared_empty).
        "Span._add_event": _fingerprint(_undecorated(sdk_trace.Span._add_event)),
        "Span._add_link": _fingerprint(_undecorated(sdk_trace.Span._add_link)),
        "Span.add_event": _fingerprint(sdk_trace.Span.add_event),
        "Span.add_link": _fingerprint(sdk_trace.Span.add_link),
        "Span.record_exception": _fingerprint(sdk_trace.Span.record_exception),
        "_check_span_ended": _fingerprint(sdk_trace._check_span_ended),
    }


def _undecorated(function: Callable[..., Any]) -> Callable[..., Any]:
    """The function ``_check_span_ended`` wrapped (its closure's one function), else itself."""
    cells = getattr(function, "__closure__", None) or ()
    inner = [c.cell_contents for c in cells if inspect.isfunction(c.cell_contents)]
    return inner[0] if len(inner) == 1 else function


# As read from opentelemetry-sdk 1.45.1 (after re-verifying a new SDK, update both).
VERIFIED = {
    "Tracer.start_span": 2656130168,
    "Span.__init__": 1475908405,
    "Span.start": 383901737,
    "Span.set_attribute": 1048025406,
    "Span.set_attributes": 3260007561,
    "BoundedAttributes.__init__": 861958662,
    "BoundedAttributes.__setitem__": 705699478,
    "BoundedAttributes._set_items": 1341838243,
    "BoundedAttributes._setitem_locked": 3297577264,
    "_clean_attribute_value": 55847215,
    "ReadableSpan.__init__": 360919018,
    "Span._new_events": 3120483865,
    "Span._new_links": 652836791,
    "Span.end": 857157707,
    "Span._readable_span": 2720570931,
    "BoundedList.__init__": 3405008081,
    "SpanContext.__new__": 58539424,
    "SynchronousMultiSpanProcessor.on_end": 1612621279,
    "Tracer._is_enabled": 2897487046,
    "Span.is_recording": 2448735094,
    "NoOpTracerMetrics.start_span": 680789356,
    "Decision.is_sampled": 1591571443,
    "Decision.is_recording": 1374087518,
    "RandomIdGenerator.generate_trace_id": 2424190098,
    "RandomIdGenerator.generate_span_id": 2102349030,
    "RandomIdGenerator.is_trace_id_random": 2068527459,
    "Span._add_event": 219004655,
    "Span._add_link": 3583167099,
    "Span.add_event": 2671636633,
    "Span.add_link": 2715263696,
    "Span.record_exception": 4219188992,
    "_check_span_ended": 843137390,
}

# (A name fingerprint cannot see a changed constant: is_trace_id_random's is checked itself.)
ENABLED = (
    fingerprints() == VERIFIED
    and RandomIdGenerator().is_trace_id_random() is True
    and NoOpTracerMetrics().start_span(None, _SAMPLE) is _NO_END_METRICS
)


def start_span(
    tracer: trace_api.Tracer,
    name: str,
    context: Context | None,
    kind: SpanKind,
    attributes: Mapping[str, Any] | None,
    start_time: int | None = None,
    plain: bool = False,
    url_fields: tuple[Any, ...] | None = None,
) -> trace_api.Span:
    """``tracer.start_span(name, context, kind, attributes, start_time=start_time)``.

    ``plain``: the caller knows every value of ``attributes`` is a ``str`` or an ``int``, under
    a non-empty ``str`` key, so only the span limits are checked; the span then remembers it
    (``_hyperdx_str_int``) until a value of another type is set, and the encoder skips its
    own type check. ``url_fields``: the span's ``_hyperdx_url_fields``
    (``hygiene.SpanHygieneProcessor.prepare_server``), given only when the processors'
    ``on_start`` has nothing left to do for the span (``server.wsgi.start_server_span``: only
    our processors, a parent context without baggage, the URL prepared): it is not called."""
    if type(tracer) is not _SDK_TRACER or not ENABLED:
        return tracer.start_span(name, context, kind, attributes, start_time=start_time)
    t: Any = tracer
    parent: Any
    if type(context) is Context and not context:
        parent = _INVALID_PARENT  # what an empty context's current span holds
    else:
        parent = trace_api.get_current_span(context).get_span_context()
        if parent is not None and not isinstance(parent, SpanContext):
            raise TypeError("parent_span_context must be a SpanContext or None.")
    if not t._tracer_config.is_enabled:  # Tracer._is_enabled(), inlined
        return trace_api.NonRecordingSpan(context=cast(SpanContext, parent))  # None as the SDK
    ids = t.id_generator
    stock_ids = type(ids) is _RANDOM_IDS and ENABLED
    sampler = t.sampler
    span_id = 0
    if parent is None or parent is _INVALID_PARENT or not parent.is_valid:
        parent = None
        if stock_ids and (sampler is _DEFAULT_ON or sampler is _ALWAYS_ON):
            # Both ids from one draw: getrandbits(192) yields getrandbits(128) then
            # getrandbits(64) of the same generator state (its words fill from the low end),
            # and these samplers draw nothing in between. A zero id (the SDK's generators
            # loop until it is not) draws again below, as the SDK would.
            both = _random.getrandbits(192)
            trace_id = (both & _TRACE_ID_MAX) or ids.generate_trace_id()
            span_id = both >> 128
        else:
            # RandomIdGenerator.generate_trace_id, inlined (its loop only runs for a zero id).
            trace_id = (stock_ids and _random.getrandbits(128)) or ids.generate_trace_id()
    else:
        trace_id = parent.trace_id
    if sampler is _ALWAYS_ON or (
        sampler is _DEFAULT_ON and (parent is None or parent.trace_flags.sampled)
    ):
        # What these stock samplers return here: record and sample, the caller's attributes,
        # the parent's trace state.
        decision = _SAMPLE
        attrs: Any = attributes
        trace_state = None if parent is None else parent.trace_state
    else:
        result = sampler.should_sample(context, trace_id, name, kind, attributes, ())
        decision, attrs, trace_state = result.decision, result.attributes, result.trace_state
    if parent is not None:
        random = parent.trace_flags.random_trace_id
    else:
        random = stock_ids or ids.is_trace_id_random()  # the stock generator's is True
    if not span_id:
        span_id = (stock_ids and _random.getrandbits(64)) or ids.generate_span_id()
    # SpanContext(trace_id, span_id, False, flags, trace_state), its __new__ inlined.
    span_context = _new_tuple(
        SpanContext,
        (
            trace_id,
            span_id,
            False,
            _SAMPLED_FLAGS[bool(random)]
            if decision is _SAMPLE
            else _FLAGS[decision.is_sampled(), bool(random)],
            _DEFAULT_TRACE_STATE if trace_state is None else trace_state,
            0 < trace_id <= _TRACE_ID_MAX and 0 < span_id <= _SPAN_ID_MAX,
        ),
    )
    tracer_metrics = t._tracer_metrics
    if type(tracer_metrics) is _NO_TRACER_METRICS:  # its start_span returns this, always
        record_end_metrics = _NO_END_METRICS
    else:
        record_end_metrics = tracer_metrics.start_span(parent, decision)
    if decision is not _SAMPLE and not decision.is_recording():
        return trace_api.NonRecordingSpan(context=span_context)
    limits = t._span_limits
    max_count = limits.max_span_attributes
    vouched = (
        plain
        and attrs is attributes
        and limits.max_span_attribute_length is None
        and (max_count is None or not attrs or len(attrs) <= max_count)
    )
    if not vouched:  # else: what _plain would find, without reading every key and value
        plain = _plain(attrs, max_count, limits.max_span_attribute_length)
    span: Any
    if plain:
        span = _new_span(
            name, span_context, parent, t, kind, limits, attrs, record_end_metrics, start_time
        )
        if vouched:
            span._hyperdx_str_int = True
    else:
        span = _Span(
            name=name,
            context=span_context,
            parent=parent,
            sampler=sampler,
            resource=t.resource,
            attributes=attrs,
            span_processor=t.span_processor,
            kind=kind,
            links=(),
            instrumentation_info=t.instrumentation_info,
            record_exception=True,
            set_status_on_exception=True,
            limits=limits,
            instrumentation_scope=t._instrumentation_scope,
            record_end_metrics=record_end_metrics,
        )
        # Span.start: nobody else holds the new span yet, so no lock and no started check.
        span._start_time = start_time if start_time is not None else time_ns()
    if url_fields is not None:
        span._hyperdx_url_fields = url_fields
        return span
    span._span_processor.on_start(span, parent_context=context)
    return span


_EMPTY_LISTS: dict[int | None, BoundedList] = {}  # by maxlen: shared, never appended to


def _shared_empty(maxlen: int | None) -> BoundedList:
    """The empty event/link list new spans share for ``maxlen`` (a fresh one past 16 limits:
    never shared, so a span owns it)."""
    found = _EMPTY_LISTS.get(maxlen)
    if found is None:
        found = BoundedList(maxlen)
        if len(_EMPTY_LISTS) < 16:
            _EMPTY_LISTS[maxlen] = found
    return found


def _new_span(
    name: str,
    span_context: SpanContext,
    parent: SpanContext | None,
    tracer: Any,
    kind: SpanKind,
    limits: Any,
    attrs: Any,
    record_end_metrics: Any,
    start_time: int | None,
) -> _Span:
    """The state ``_Span(...)`` (``Span.__init__`` and ``ReadableSpan.__init__``, no events,
    no links, clean ``attrs``) plus ``Span.start``'s start time, set field by field: the SDK's
    keyword-argument chain, its attribute cleaning and its four locks' worth of helper calls
    are most of a span's creation cost."""
    stored: Any = object.__new__(_BOUNDED)
    stored._dict = dict(attrs) if attrs else {}
    stored.maxlen = limits.max_span_attributes
    stored.dropped = 0
    stored.max_value_len = limits.max_span_attribute_length
    stored._lock = _LOCK()
    stored._immutable = False
    # No events and no links yet: the shared empty lists (the span gets its own at its first
    # add_event / add_link, see _Span._add_event): two objects, two deques and two locks
    # fewer to build and free per span.
    events = _EMPTY_LISTS.get(limits.max_events)
    if events is None:
        events = _shared_empty(limits.max_events)
    links = _EMPTY_LISTS.get(limits.max_links)
    if links is None:
        links = _shared_empty(limits.max_links)
    span = object.__new__(_Span)
    span._name = name
    span._context = span_context
    span._kind = kind
    span._instrumentation_info = tracer.instrumentation_info
    span._instrumentation_scope = tracer._instrumentation_scope
    span._parent = parent
    span._start_time = start_time if start_time is not None else time_ns()
    span._end_time = None
    span._attributes = stored
    span._events = events
    span._links = links
    span._resource = tracer.resource
    span._status = _UNSET_STATUS
    span._sampler = tracer.sampler
    span._trace_config = None
    span._record_exception = True
    span._set_status_on_exception = True
    span._span_processor = tracer.span_processor
    span._limits = limits
    span._lock = _LOCK()
    span._record_end_metrics = record_end_metrics
    return span


class _Span(_SDK_SPAN):
    """The SDK span, with a cheaper ``end`` and ``set_attribute`` (same name, so ``repr`` and
    anything reading ``type(span).__name__`` see what the SDK's span shows).

    ``end``: when the tracer provider's processor is our composite (it has ``end_live``), the
    ended span itself is handed over instead of a new ``ReadableSpan`` copy of its fields (the
    copy holds the very same objects; our processors only read them). ``set_attribute``: a
    plain value the SDK would store as is goes straight into the attribute dict.
    """

    # What the hygiene processor's on_start left under the URL keys (``hygiene``), read at end.
    _hyperdx_url_fields: tuple[Any, ...] | None = None
    # Every attribute value is a str or an int (vouched at start, cleared by any other value).
    _hyperdx_str_int = False

    def end(self, end_time: int | None = None) -> None:
        end_live = getattr(self._span_processor, "end_live", None)
        if end_live is None or not ENABLED:
            super().end(end_time)
            return
        with self._lock:
            usual = self._start_time is not None and self._end_time is None
            if usual:
                self._end_time = end_time if end_time is not None else time_ns()
                attributes: Any = self._attributes
                attributes._immutable = True
        if not usual:  # not started or already ended: the SDK's error or warning
            super().end(end_time)
            return
        record_end_metrics = self._record_end_metrics
        if record_end_metrics and record_end_metrics is not _NO_END_METRICS:
            record_end_metrics()
        end_live(self)

    def set_attribute(self, key: str, value: Any) -> None:
        if type(value) in _PLAIN_VALUES and type(key) is str and key and ENABLED:
            stored = self._attributes
            with self._lock:
                if (
                    self._end_time is None
                    and type(stored) is _BOUNDED
                    and not stored._immutable
                    and (
                        type(value) is not str
                        or stored.max_value_len is None
                        or len(value) <= stored.max_value_len
                    )
                ):
                    plain = stored._dict
                    maxlen = stored.maxlen
                    present = key in plain
                    if present or maxlen is None or len(plain) < maxlen:
                        if type(value) is not str and type(value) is not int:
                            self._hyperdx_str_int = False
                        if not present:
                            # One dict store: atomic, so the attribute lock (which orders
                            # writers against the mapping's own iteration) adds nothing; the
                            # span lock held here keeps the other writers out.
                            plain[key] = value
                            return
                        with stored._lock:
                            plain.pop(key, None)  # an existing key moves to the end
                            plain[key] = value
                        return
        self._hyperdx_str_int = False
        super().set_attribute(key, value)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._hyperdx_str_int = False
        super().set_attributes(attributes)

    def _add_event(self, event: Any) -> None:
        self._own_lists()
        super()._add_event(event)

    def _add_link(self, link: Any) -> None:
        self._own_lists()
        super()._add_link(link)

    def _own_lists(self) -> None:
        """Give a span still holding the shared empty event/link lists (``_new_span``) its own,
        as ``Span.__init__`` would have, before the SDK appends to one (only while recording:
        the SDK appends nothing to an ended span)."""
        with self._lock:
            if self._end_time is None:
                limits = self._limits
                if self._events is _EMPTY_LISTS.get(limits.max_events):
                    self._events = BoundedList(limits.max_events)
                if self._links is _EMPTY_LISTS.get(limits.max_links):
                    self._links = BoundedList(limits.max_links)


_plain_keys: set[str] = set()  # keys already seen to be non-empty, exact ``str``
_MAX_PLAIN_KEYS = 4096


def _plain(attrs: Any, max_count: int | None, max_len: int | None) -> bool:
    """Whether the SDK's cleaning would store ``attrs`` unchanged, in order, dropping none."""
    if not attrs:
        return True
    if max_count is not None and len(attrs) > max_count:
        return False
    if not _plain_keys.issuperset(attrs):  # hashed lookups of known keys, in C
        if set(map(type, attrs)) != _STR_ONLY or "" in attrs:
            return False
        if len(_plain_keys) < _MAX_PLAIN_KEYS:
            _plain_keys.update(attrs)
    values = attrs.values()
    if not _PLAIN_VALUES.issuperset(map(type, values)):
        return False
    if max_len is not None:
        return all(len(v) <= max_len for v in values if type(v) is str)
    return True


def set_str_at_start(span: Any, key: str, value: str) -> None:
    """``span.set_attribute(key, value)`` for a ``str`` set from a processor's ``on_start``.

    Same stored result (an existing key moves to the end, as the SDK re-inserts it) without the
    cleaning; the span is not yet visible to other threads there, so the attribute lock is not
    needed. Falls back to ``set_attribute`` whenever the SDK would do anything else (a full
    mapping, a value over the length limit, an ended span, another span class).
    """
    attrs = getattr(span, "_attributes", None)
    if (
        ENABLED
        and (type(span) is _Span or type(span) is _SDK_SPAN)
        and type(attrs) is _BOUNDED
        and type(value) is str
        and type(key) is str
        and key
        and span._end_time is None
        and not attrs._immutable
    ):
        stored = attrs._dict
        maxlen, max_value_len = attrs.maxlen, attrs.max_value_len
        if (max_value_len is None or len(value) <= max_value_len) and (
            maxlen is None or len(stored) < maxlen or key in stored
        ):
            stored.pop(key, None)
            stored[key] = value
            return
    span.set_attribute(key, value)


def set_plain_attributes(span: Any, attrs: dict[str, Any]) -> None:
    """``span.set_attributes(attrs)``, the same stored result, without the SDK re-cleaning
    values that are already clean (captured attributes are str, int and bool: ~4 Python calls
    per attribute saved). Only when the SDK would store every value as is, in order, dropping
    none (else the SDK's own call)."""
    stored = getattr(span, "_attributes", None)
    if (
        ENABLED
        and (type(span) is _Span or type(span) is _SDK_SPAN)
        and type(stored) is _BOUNDED
        and not stored._immutable
        and (stored.maxlen is None or len(stored._dict) + len(attrs) <= stored.maxlen)
        and _plain(attrs, stored.maxlen, stored.max_value_len)
    ):
        if type(span) is _Span:
            span._hyperdx_str_int = False
        with span._lock:
            if span._end_time is None:
                plain = stored._dict
                with stored._lock:
                    for key, value in attrs.items():
                        plain.pop(key, None)  # an existing key moves to the end, as in the SDK
                        plain[key] = value
                return
    span.set_attributes(attrs)


# Span classes whose is_recording() is ``span._end_time is None`` (none if not ENABLED).
RECORDING_UNTIL_ENDED: frozenset[type] = frozenset({_Span, _SDK_SPAN}) if ENABLED else frozenset()
