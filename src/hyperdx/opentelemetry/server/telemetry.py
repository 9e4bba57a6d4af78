"""Per app (or per middleware) state, made once: tracer, instruments, header capture, mode."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from importlib import metadata
from itertools import repeat
from operator import itemgetter
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation, get_meter

from hyperdx.opentelemetry import metrics_fast
from hyperdx.opentelemetry.server import semconv


def contrib_version(package: str) -> str:
    """The version contrib's scope would carry (our spans keep contrib's scope identity)."""
    try:
        return metadata.version(f"opentelemetry-instrumentation-{package}")
    except metadata.PackageNotFoundError:
        return "0.66b1"


class ServerTelemetry:
    """Everything a request needs that does not depend on the request."""

    def __init__(
        self,
        scope: str,
        package: str,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        *,
        active_unit: str = "{request}",
        active_description: str = semconv.ACTIVE_DESCRIPTION,
        headers: semconv.HeaderCapture | None = None,
        schema_url: str | None = None,
    ) -> None:
        self.mode = mode = semconv.current_mode()
        version = contrib_version(package)
        schema_url = schema_url or mode.schema_url
        self.tracer = trace.get_tracer(scope, version, tracer_provider, schema_url=schema_url)
        self.meter = get_meter(scope, version, meter_provider, schema_url=schema_url)
        old, new = semconv.duration_instruments(self.meter, mode)
        self.duration_old = metrics_fast.histogram(old) if old is not None else None
        self.duration_new = metrics_fast.histogram(new) if new is not None else None
        # The span context is only read by exemplars, which the fast histograms never take.
        self._exemplar_context = not all(
            h is None or isinstance(h, metrics_fast.FastHistogram)
            for h in (self.duration_old, self.duration_new)
        )
        self._old_known = metrics_fast.record_known_of(self.duration_old)
        self._new_known = metrics_fast.record_known_of(self.duration_new)
        # record_wsgi's memo: the keys its picks read, and the picked dicts per their values.
        self._wsgi_keys: tuple[str, ...] = (
            semconv.WSGI_DURATION_OLD_ORDER if old is not None else ()
        ) + (semconv.WSGI_DURATION_NEW_ORDER if new is not None else ())
        self._wsgi_picked: dict[Any, tuple[dict[str, Any], dict[str, Any]]] = {}
        # The old keys are all there once the status is set; the new ones include the rare
        # error.type, so a KeyError would be the rule there.
        self._wsgi_get = itemgetter(*self._wsgi_keys) if new is None and old is not None else None
        self.active = ActiveRequests.of(self.meter, active_unit, active_description)
        self.headers = headers or semconv.HeaderCapture()

    def record(
        self,
        seconds: float,
        attrs: dict[str, Any],
        span: trace.Span | None,
        old_extra: dict[str, Any] | None = None,
        new_extra: dict[str, Any] | None = None,
        span_context: Any = None,
    ) -> None:
        """The duration histograms, with the span as the exemplar context.

        ``span_context``: a context already holding ``span`` (the one attached for the request),
        so no new one is made per request."""
        if span_context is None and span is not None and self._exemplar_context:
            span_context = trace.set_span_in_context(span)
        # Both duration histograms, each with its own attribute filter (contrib's rule).
        old = self.duration_old
        if old is not None:
            a = semconv.pick(attrs, semconv.DURATION_OLD)
            if old_extra:
                a.update(old_extra)
            old.record(max(round(seconds * 1000), 0), a, context=span_context)
        new = self.duration_new
        if new is not None:
            a = semconv.pick(attrs, semconv.DURATION_NEW)
            if new_extra:
                a.update(new_extra)
            new.record(max(seconds, 0), a, context=span_context)

    def exemplar_context(self, span: trace.Span) -> Any:
        """What :meth:`record` passes as the exemplar context for ``span`` when the caller
        has no attached context: None when no histogram reads it (the fast ones never do)."""
        return trace.set_span_in_context(span) if self._exemplar_context else None

    def record_wsgi(
        self,
        seconds: float,
        attrs: dict[str, Any],
        route: Any,
        span_context: Any,
        str_int: bool = False,
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """:meth:`record` for ``attrs`` from ``wsgi.request_attributes`` + ``set_status`` only
        (so the filtered keys are read in their known order) plus the extras of ``route``
        (``None``, or a hashable object whose ``old_extra`` and ``new_extra`` never change: a
        Flask URL rule's). ``span_context``: the exemplar context (the attached one, or
        :meth:`exemplar_context`). ``str_int``: every value in ``attrs`` is known to be a
        ``str`` or an ``int`` (``wsgi.request_start_plain``).

        The picked attribute dicts are memoised per combination of the values read and the
        route (held in the key, so compared by identity), so the histograms see the same dicts
        again (``record_known``). Returns them (old, new) when memoised: a caller may pass
        them to :meth:`record_known` for a request it knows has the same values."""
        values = None
        if self._wsgi_get is not None:  # all keys present, the usual case: read in C
            try:  # noqa: SIM105 - contextlib.suppress costs a context manager per request
                values = self._wsgi_get(attrs)
            except KeyError:
                pass
        if values is None:
            keys = self._wsgi_keys
            values = tuple(map(attrs.get, keys, _ABSENT_PER_KEY[len(keys)]))
        # Unless vouched str/int, the value types too: True == 1 and 1.0 == 1 must not share
        # a memoised set.
        memo_key: Any = (values, route) if str_int else (values, tuple(map(type, values)), route)
        try:
            found = self._wsgi_picked.get(memo_key)
        except TypeError:  # an unhashable value: picked afresh, not memoised
            found = memo_key = None
        if found is None:
            old_extra = new_extra = None
            if route is not None:
                old_extra, new_extra = route.old_extra, route.new_extra
            found = self._pick_wsgi(attrs, old_extra, new_extra)
            if memo_key is not None and len(self._wsgi_picked) < _MAX_PICKED:
                self._wsgi_picked[memo_key] = found
            else:  # not memoised: recorded as any other dict
                if self.duration_old is not None:
                    self.duration_old.record(
                        max(round(seconds * 1000), 0), found[0], context=span_context
                    )
                if self.duration_new is not None:
                    self.duration_new.record(max(seconds, 0), found[1], context=span_context)
                return None
        self.record_known(seconds, found[0], found[1], span_context)
        return found

    def _pick_wsgi(
        self,
        attrs: dict[str, Any],
        old_extra: dict[str, Any] | None,
        new_extra: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        old = semconv.pick_in_order(attrs, semconv.WSGI_DURATION_OLD_ORDER)
        if old_extra:
            old.update(old_extra)
        new = semconv.pick_in_order(attrs, semconv.WSGI_DURATION_NEW_ORDER)
        if new_extra:
            new.update(new_extra)
        return old, new

    def record_picked(
        self,
        seconds: float,
        old_attrs: dict[str, Any],
        new_attrs: dict[str, Any],
        span_context: Any,
    ) -> None:
        """:meth:`record` with the attributes already picked for each histogram (the ASGI path
        remembers them, so nothing here or below may change them)."""
        old = self.duration_old
        if old is not None:
            old.record(max(round(seconds * 1000), 0), old_attrs, context=span_context)
        new = self.duration_new
        if new is not None:
            new.record(max(seconds, 0), new_attrs, context=span_context)

    def record_known(
        self,
        seconds: float,
        old_attrs: dict[str, Any],
        new_attrs: dict[str, Any],
        span_context: Any,
    ) -> None:
        """:meth:`record_picked` with memoised attribute dicts that nobody changes any more
        (the histograms remember their aggregations by the dicts' identity)."""
        if self._old_known is not None:
            ms = round(seconds * 1000)
            self._old_known(ms if ms >= 0 else 0, old_attrs, span_context)
        if self._new_known is not None:
            self._new_known(seconds if seconds >= 0 else 0, new_attrs, span_context)

    response_size_old: Any = None
    response_size_new: Any = None
    request_size_old: Any = None
    request_size_new: Any = None

    def ensure_size_histograms(self) -> None:
        """The ASGI body-size histograms (contrib's ASGI middleware records these too)."""
        if self.request_size_old is not None or self.request_size_new is not None:
            return
        for attribute, new, name, description in _SIZE_HISTOGRAMS:
            if self.mode.new if new else self.mode.old:
                histogram = self.meter.create_histogram(
                    name=name, unit="By", description=description
                )
                setattr(self, attribute, metrics_fast.histogram(histogram))


# (attribute, for the new keys (else the old), name, description), as contrib creates them.
_SIZE_HISTOGRAMS = (
    (
        "response_size_old",
        False,
        "http.server.response.size",
        "measures the size of HTTP response messages (compressed).",
    ),
    (
        "request_size_old",
        False,
        "http.server.request.size",
        "Measures the size of HTTP request messages (compressed).",
    ),
    (
        "response_size_new",
        True,
        "http.server.response.body.size",
        "Size of HTTP server response bodies.",
    ),
    (
        "request_size_new",
        True,
        "http.server.request.body.size",
        "Size of HTTP server request bodies.",
    ),
)


_MAX_PICKED = 1024  # memoised duration attribute sets per app (methods x statuses x routes)
_ABSENT: Any = object()
_ABSENT_PER_KEY = [(_ABSENT,) * n for n in range(32)]  # dict.get's default, once per key

_MAX_ATTRIBUTE_SETS = 2000  # the SDK's cardinality limit per instrument
_OVERFLOW = (("otel.metric.overflow", True),)
Cell = deque[None]  # one item per request in flight (ActiveRequests)
_MAX_KNOWN_KEYS = 512  # cell_of's memo (keys made per request beyond it are hashed each time)


class ActiveRequests:
    """``http.server.active_requests`` counted by us, read by the SDK at collection time.

    Same name, unit, description and attributes as contrib's synchronous up-down counter,
    exported the same way (a cumulative, non-monotonic sum), but the two SDK measurements per
    request (+1, -1; each hashes and sorts its attributes) become two deque operations.

    A count is a :class:`collections.deque` (a *cell*) holding one item per request in flight:
    +1 is ``cell.append(None)`` and -1 is ``cell.pop()``, each atomic under the GIL, so a
    request updates its count without a lock or a Python call; the count is ``len(cell)``.
    +1 and -1 always pair up (an unhashable key counts under the overflow set), so a count
    never needs to go below zero; an unpaired -1 on an empty cell is ignored.
    """

    _shared: dict[tuple[int, str, str], ActiveRequests] = {}
    _shared_lock = threading.Lock()

    def __init__(self, meter: Any, unit: str, description: str) -> None:
        self._counts: dict[tuple[tuple[str, Any], ...], Cell] = {}  # key -> its cell
        self._lock = threading.Lock()  # guards _counts (a new key), not the cells
        self._known: dict[int, tuple[Any, Cell]] = {}  # cell_of's, by id(key)
        self._meter = meter  # keeps id(meter) unique while registered in _shared
        meter.create_observable_up_down_counter(
            name="http.server.active_requests",
            callbacks=[self._observe],
            unit=unit,
            description=description,
        )

    @classmethod
    def of(cls, meter: Any, unit: str, description: str) -> ActiveRequests:
        """One per meter and unit: the SDK keeps only the first registration's callback."""
        key = (id(meter), unit, description)
        with cls._shared_lock:
            found = cls._shared.get(key)
            if found is None:
                found = cls._shared[key] = cls(meter, unit, description)
            return found

    def add(self, amount: int, key: tuple[tuple[str, Any], ...]) -> None:
        """``key``: the attribute items, as :func:`semconv.active_attrs` builds them."""
        self.add_to(self.cell(key), amount)

    def cell(self, key: tuple[tuple[str, Any], ...]) -> Cell:
        """The count of ``key`` (the overflow one past the limit): ``append(None)`` is +1,
        ``pop()`` -1 (:meth:`add_to`); a caller that remembers it skips hashing the key per
        request (counts are never removed)."""
        with self._lock:
            return self._cell_locked(key)

    def _cell_locked(self, key: tuple[tuple[str, Any], ...]) -> Cell:
        try:
            found = self._counts.get(key)  # one lookup (one hash of the key) when it is known
        except TypeError:
            # An unhashable attribute value (a list as HTTP_HOST: no PEP 3333 server sends one,
            # a test client can). The SDK could not key it either; the request is still
            # counted, under the overflow attribute set, so the +1 and -1 always pair up.
            key = _OVERFLOW
            found = self._counts.get(key)
        return found if found is not None else self._new_cell(key)

    def cell_of(self, key: tuple[tuple[str, Any], ...]) -> Cell:
        """:meth:`cell`, found by the key's identity when this key object was seen before (a
        memoised key, as ``wsgi.request_start`` returns per server combination): no hashing
        of the nested key per request."""
        found = self._known.get(id(key))
        if found is not None and found[0] is key:
            return found[1]
        cell = self.cell(key)
        if len(self._known) < _MAX_KNOWN_KEYS:
            self._known[id(key)] = (key, cell)  # holds the key, so its id stays its own
        return cell

    @staticmethod
    def add_to(cell: Cell, amount: int) -> None:
        """Add ``amount`` to a count :meth:`cell` returned (a hot path does ``cell.append(None)``
        and ``cell.pop()`` itself)."""
        if amount == 1:
            cell.append(None)
            return
        if amount > 0:
            cell.extend(repeat(None, amount))
            return
        for _ in range(-amount):
            try:
                cell.pop()
            except IndexError:  # an unpaired -1: the count stays at zero
                return

    def _new_cell(self, key: tuple[tuple[str, Any], ...]) -> Cell:
        counts = self._counts
        if len(counts) >= _MAX_ATTRIBUTE_SETS:
            key = _OVERFLOW
        cell = counts.get(key)
        if cell is None:
            cell = counts[key] = deque()
        return cell

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            items = [(key, len(cell)) for key, cell in self._counts.items()]
        return [Observation(value, dict(key)) for key, value in items]
