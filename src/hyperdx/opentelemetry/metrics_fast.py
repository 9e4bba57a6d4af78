"""Cheap histogram records for our own meter provider, aggregated by the SDK's own objects.

Why: one ``Histogram.record`` through the SDK costs ~14 us of CPU (the ``Measurement`` with its
attribute cleaning, the context, the exemplar filter, the attribute copy and its sorted,
type-tagged hash, the lookup, the lock), and the server request path records two to six of them
per request.  All of that work is only needed the first time an attribute set is seen.

How: :class:`FastHistogram` wraps an SDK histogram of a meter provider our distro built (see
:func:`adopt`).  The first record of an attribute set goes through the SDK's own code for every
reader (``_ViewInstrumentMatch.consume_measurement``), which creates the SDK's aggregation for it
exactly as ``Histogram.record`` would; we then remember those aggregation objects under a cheap
key (the attribute keys, values and value types, in the caller's order).  Later records of that
set call the SDK aggregation's own ``aggregate`` directly.  Collection, temporality (delta or
cumulative, per reader), start and end times, bucket boundaries, scope, name, unit and
description are therefore the SDK's, unchanged: there is no second aggregation, no reader or
exporter wrapper, and a record made through the plain SDK instrument of the same name (another
library on the same meter) lands in the same aggregation, so nothing is exported twice.

What is skipped is only what is provably unused: the exemplar work (we only bind when the
provider's exemplar filter is ``AlwaysOffExemplarFilter``, so ``should_sample`` is always false
and the measurement's time and context are never read) and the per-record attribute copy,
cleaning and hashing (done once per set; only sets of plain ``str``/``int``/``float``/``bool``
values are remembered, everything else takes the SDK path on every record).

Anything else keeps the SDK path unchanged: a meter provider we did not build, a View matching
the instrument, a reader asking for another aggregation (e.g. exponential histograms), exemplars
wanted (``OTEL_METRICS_EXEMPLAR_FILTER``), a disabled meter, a non-finite or negative value, or
an SDK whose private layout differs from the one this module knows (1.45).

One difference from SDK 1.45, on purpose: attribute sets are bounded.  After
:data:`MAX_ATTRIBUTE_SETS` sets per instrument and reader, new sets are recorded under
``{"otel.metric.overflow": True}`` (the specification's cardinality rule; SDK 1.45 grows without
bound, and old-semconv ``http.host`` comes from the request's Host header).

Forks: the state lives in the SDK's reader storages.  When the fork handling replaces them
(``forking``), the next record sees new storages and binds afresh, so a worker never reports its
master's measurements.
"""

from __future__ import annotations

import math
import threading
import weakref
from bisect import bisect_left
from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry.context import get_current

from hyperdx.opentelemetry.fast_span import _fingerprint as fingerprint

MAX_ATTRIBUTE_SETS = 2000  # per instrument and reader, as ActiveRequests counts them
OVERFLOW_ATTRIBUTES: dict[str, Any] = {"otel.metric.overflow": True}
_MAX_ALIASES = 4 * MAX_ATTRIBUTE_SETS  # the same set in another key order is another alias
_PLAIN_TYPES = frozenset({str, int, float, bool})

try:  # the SDK's private layout this module relies on (opentelemetry-sdk 1.45)
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter
    from opentelemetry.sdk.metrics._internal import _ProxyMeterConfig
    from opentelemetry.sdk.metrics._internal._view_instrument_match import (
        _hash_attributes,
        _ViewInstrumentMatch,
    )
    from opentelemetry.sdk.metrics._internal.aggregation import (
        _ExplicitBucketHistogramAggregation,
    )
    from opentelemetry.sdk.metrics._internal.instrument import _Histogram
    from opentelemetry.sdk.metrics._internal.measurement import Measurement
    from opentelemetry.sdk.metrics._internal.metric_reader_storage import _DEFAULT_VIEW

    _SDK_KNOWN = True
except ImportError:  # pragma: no cover - another SDK layout: the SDK path everywhere
    _SDK_KNOWN = False


def aggregate_fingerprints() -> dict[str, int]:
    """The installed SDK's fingerprints of the histogram aggregation code inlined here."""
    if not _SDK_KNOWN:  # pragma: no cover
        return {}
    agg = _ExplicitBucketHistogramAggregation
    return {
        "aggregate": fingerprint(agg.aggregate),
        "_sample_exemplar": fingerprint(agg._sample_exemplar),  # noqa: SLF001
    }


# As read from opentelemetry-sdk 1.45.1 (after re-verifying a new SDK, update both).
AGGREGATE_VERIFIED = {"aggregate": 3818521303, "_sample_exemplar": 3358209681}
_AGGREGATE_VERIFIED = aggregate_fingerprints() == AGGREGATE_VERIFIED

_adopted: weakref.WeakSet[Any] = weakref.WeakSet()
_wrappers: weakref.WeakKeyDictionary[Any, FastHistogram] = weakref.WeakKeyDictionary()
_wrappers_lock = threading.Lock()


def adopt(meter_provider: Any) -> None:
    """Allow the fast path for histograms of ``meter_provider`` (one our distro built)."""
    consumer = getattr(meter_provider, "_measurement_consumer", None)
    if _SDK_KNOWN and consumer is not None:
        _adopted.add(consumer)


def histogram(instrument: Any) -> Any:
    """``instrument`` itself, or a :class:`FastHistogram` recording into it (same ``record``).

    One wrapper per SDK instrument, so every app sharing a meter shares the remembered sets."""
    if not _eligible(instrument):
        return instrument
    with _wrappers_lock:
        found = _wrappers.get(instrument)
        if found is None:
            found = _wrappers[instrument] = FastHistogram(instrument)
        return found


def record_known_of(instrument: Any) -> Any:
    """``instrument.record_known`` of a :class:`FastHistogram`, else a function with the same
    arguments calling ``instrument.record`` (an SDK instrument), None for no instrument."""
    if instrument is None:
        return None
    if isinstance(instrument, FastHistogram):
        return instrument.record_known

    def record(amount: float, attributes: dict[str, Any], context: Any = None) -> None:
        instrument.record(amount, attributes, context=context)

    return record


def _eligible(instrument: Any) -> bool:
    if not _SDK_KNOWN or type(instrument) is not _Histogram:
        return False
    consumer = getattr(instrument, "_measurement_consumer", None)
    if consumer is None or consumer not in _adopted:
        return False
    config = getattr(consumer, "_sdk_config", None)
    return isinstance(getattr(config, "exemplar_filter", None), AlwaysOffExemplarFilter)


class _Amount:
    """What ``_ExplicitBucketHistogramAggregation.aggregate`` reads of a measurement when no
    exemplar is sampled: the value."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value


_NO_STORAGES: Any = object()
_INF = math.inf  # a global load, not a module attribute per record
Key = tuple[Any, ...]


class FastHistogram:
    """An SDK histogram's ``record``, cheap after the first record of each attribute set."""

    def __init__(self, instrument: Any) -> None:
        self.instrument = instrument
        self.name = instrument.name
        self._consumer = instrument._measurement_consumer  # noqa: SLF001
        self._meter_config = getattr(instrument, "_meter_config", None)
        # The SDK's proxy config, whose ``is_enabled`` property reads ``_config.is_enabled``:
        # record_known reads that directly (None: ask ``_meter_config`` itself).
        self._proxy_config = (
            self._meter_config if type(self._meter_config) is _ProxyMeterConfig else None
        )
        self._storages: Any = _NO_STORAGES  # the reader storages the state below belongs to
        self._matches: list[Any] | None = None  # one per reader; None: the SDK path
        self._aliases: dict[Key, list[Any]] = {}
        self._known: dict[int, tuple[dict[str, Any], list[Any]]] = {}  # record_known's

    def record(
        self, amount: float, attributes: Mapping[str, Any] | None = None, context: Any = None
    ) -> None:
        """Same arguments and effect as the SDK's ``Histogram.record`` (``context`` is only
        read by exemplars, which are off wherever this is used)."""
        if self._consumer._reader_storages is not self._storages:  # noqa: SLF001
            self._bind()
        config = self._meter_config
        if (
            self._matches is None
            or not 0 <= amount < math.inf
            or (config is not None and not config.is_enabled)
        ):
            self.instrument.record(amount, attributes, context)
            return
        if attributes:
            key: Key = (*attributes, *attributes.values(), *map(type, attributes.values()))
        else:
            key = ()
        try:
            aggregations = self._aliases.get(key)
        except TypeError:  # an unhashable value (a list): never remembered
            aggregations = None
        if aggregations is None:
            self._first(amount, attributes, context, key)
            return
        _aggregate(amount, aggregations)

    def record_known(self, amount: float, attributes: dict[str, Any], context: Any = None) -> None:
        """:meth:`record`, for an attribute dict that its caller never changes once made (a
        memoised set, recorded again and again): its aggregations are then found by the dict's
        identity, without building and hashing a key of its items."""
        if self._consumer._reader_storages is not self._storages:  # noqa: SLF001
            self._bind()
        found = self._known.get(id(attributes))
        if found is not None and found[0] is attributes and 0 <= amount < _INF:
            proxy = self._proxy_config
            if (
                proxy._config.is_enabled  # noqa: SLF001 - the property's own read
                if proxy is not None
                else self._meter_config is None or self._meter_config.is_enabled
            ):
                _aggregate(amount, found[1])
                return
        self.record(amount, attributes, context)
        if self._matches is None or not attributes or len(self._known) >= _MAX_ALIASES:
            return
        key: Key = (*attributes, *attributes.values(), *map(type, attributes.values()))
        try:
            aggregations = self._aliases.get(key)
        except TypeError:  # an unhashable value: never remembered
            return
        if aggregations is not None:  # the dict is held, so its id names only it
            self._known[id(attributes)] = (attributes, aggregations)

    def _bind(self) -> None:
        """Find (or create, as the SDK's first record would) this instrument's match in every
        reader storage; the SDK path if any reader would not aggregate it the default way."""
        storages = self._consumer._reader_storages  # noqa: SLF001
        matches: list[Any] | None = []
        for storage in storages.values():
            found = storage._get_or_init_view_instrument_match(self.instrument)  # noqa: SLF001
            match = found[0] if len(found) == 1 else None
            if (
                type(match) is not _ViewInstrumentMatch
                or match._view is not _DEFAULT_VIEW  # noqa: SLF001
                or type(match._aggregation) is not _ExplicitBucketHistogramAggregation  # noqa: SLF001
            ):
                matches = None
                break
            assert matches is not None
            matches.append(match)
        self._aliases = {}
        self._known = {}
        self._matches = matches
        self._storages = storages

    def _first(
        self, amount: float, attributes: Mapping[str, Any] | None, context: Any, key: Key
    ) -> None:
        """The SDK's own record into every reader's match, then remember its aggregations."""
        matches = self._matches
        assert matches is not None
        context = context or get_current()
        measurement = Measurement(amount, time_ns(), self.instrument, context, attributes)
        cleaned = dict(measurement.attributes) if measurement.attributes else {}
        hashed = _hash_attributes(cleaned)
        tables = [match._attributes_aggregation for match in matches]  # noqa: SLF001
        if any(hashed not in table and len(table) >= MAX_ATTRIBUTE_SETS for table in tables):
            measurement = Measurement(
                amount, measurement.time_unix_nano, self.instrument, context, OVERFLOW_ATTRIBUTES
            )
            hashed = _hash_attributes(dict(OVERFLOW_ATTRIBUTES))
        for match in matches:
            match.consume_measurement(measurement, False)
        rememberable = (
            len(self._aliases) < _MAX_ALIASES
            and (attributes is None or len(cleaned) == len(attributes))
            and all(type(name) is str for name in cleaned)
            and all(type(value) in _PLAIN_TYPES for value in cleaned.values())
        )
        if rememberable:
            self._aliases[key] = [table[hashed] for table in tables]


def _aggregate(amount: float, aggregations: list[Any]) -> None:
    """``aggregation.aggregate(measurement, False)`` of each remembered aggregation."""
    if not _AGGREGATE_VERIFIED:
        value = _Amount(amount)
        for aggregation in aggregations:
            aggregation.aggregate(value, False)
        return
    for agg in aggregations:
        # ``agg.aggregate(measurement, False)`` of the verified SDK, inlined: no measurement
        # object, no exemplar call (it does nothing when not sampling).
        with agg._lock:  # noqa: SLF001
            if agg._value is None:  # noqa: SLF001
                agg._value = agg._get_empty_bucket_counts()  # noqa: SLF001
            agg._sum += amount  # noqa: SLF001
            if agg._record_min_max:  # noqa: SLF001
                if amount < agg._min:  # noqa: SLF001 - min(current, amount)
                    agg._min = amount  # noqa: SLF001
                if amount > agg._max:  # noqa: SLF001 - max(current, amount)
                    agg._max = amount  # noqa: SLF001
            agg._value[bisect_left(agg._boundaries, amount)] += 1  # noqa: SLF001
