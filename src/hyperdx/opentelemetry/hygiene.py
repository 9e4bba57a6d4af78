"""What every span, log record and metric passes through before it leaves the process.

Secrets never leave unless the user opts out (HYPERDX_CAPTURE_REDACT=false), with or without
network capture: instrumentations put raw URLs with query strings on spans and on client
metrics, and web servers log request lines (`GET /reset?token=...`). And HTTP server spans get
`http.url`, the attribute whose presence makes HyperDX show its network panel.

The secret-name patterns live in one place, `capture.redact`; this module only applies them.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from operator import is_
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, ExemplarFilter
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind

from hyperdx.opentelemetry import fast_span
from hyperdx.opentelemetry.capture.redact import Redactor, get_redactor
from hyperdx.opentelemetry.fast_span import _BOUNDED, set_str_at_start
from hyperdx.opentelemetry.fast_span import _Span as _FAST_SPAN
from hyperdx.opentelemetry.options import Settings

# Attributes HTTP client metrics may keep: bounded cardinality, no URLs (which carry query
# strings, hence secrets, and one series per distinct URL).
CLIENT_METRIC_ATTRIBUTES = frozenset(
    {
        "http.method",
        "http.status_code",
        "http.scheme",
        "http.flavor",
        "net.peer.name",
        "net.peer.port",
        "http.request.method",
        "http.response.status_code",
        "server.address",
        "server.port",
        "url.scheme",
        "network.protocol.name",
        "network.protocol.version",
        "error.type",
    }
)


def redactor_for(settings: Settings) -> Redactor:
    return get_redactor(settings.capture_redact.value, settings.capture_redact_patterns.value)


# Enum members as module constants: a global load is cached, a class attribute load is not.
_SERVER, _CLIENT = SpanKind.SERVER, SpanKind.CLIENT
_URL_KEYS = ("http.url", "url.full", "http.target", "url.query")  # what `_fixed` may change


def server_origin(attrs: Any) -> str | None:
    """``scheme://host[:port]``, the part of a server span's rebuilt ``http.url`` before the
    request target (old or new conventions), None without a scheme or a host. It reads only
    attributes a WSGI request's head sets, so ``server.wsgi`` computes it once per head."""
    scheme = attrs.get("http.scheme") or attrs.get("url.scheme")
    host = attrs.get("http.host") or attrs.get("server.address") or attrs.get("net.host.name")
    if not (scheme and host):
        return None
    port = attrs.get("server.port") or attrs.get("net.host.port")
    if port and ":" not in str(host) and str(port) not in ("80", "443"):
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def request_url(origin: str, target: str) -> str:
    """A server request's URL from its origin and request target: the target itself when it
    is in absolute form (``GET http://user:pw@host/path``, as sent to a proxy), so that its
    user-info is where the redactor looks for it."""
    if Redactor.is_absolute_target(target):
        return target
    return f"{origin}{target}"


def _server_url(attrs: Any) -> str | None:
    """Rebuild the request URL of a server span from the old or the new conventions."""
    target = attrs.get("http.target")
    if target is None and attrs.get("url.path") is not None:
        query = attrs.get("url.query")
        target = f"{attrs['url.path']}?{query}" if query else attrs["url.path"]
    if target is None:
        return None
    origin = server_origin(attrs)
    return None if origin is None else request_url(origin, target)


def _plain_attributes(span: Any) -> dict[str, Any] | None:
    """The SDK's plain dict behind ``span.attributes`` (a mappingproxy over BoundedAttributes,
    whose Mapping.get is several Python-level calls per key), None for other span classes."""
    plain = getattr(getattr(span, "_attributes", None), "_dict", None)
    return plain if type(plain) is dict else None


def _kind_and_attributes(span: Any) -> tuple[SpanKind, dict[str, Any] | None]:
    """``span.kind`` and :func:`_plain_attributes`; fast_span's spans are read directly."""
    if type(span) is _FAST_SPAN:
        plain = getattr(span._attributes, "_dict", None)
        return span._kind, plain if type(plain) is dict else None
    return span.kind, _plain_attributes(span)


class SpanHygieneProcessor(SpanProcessor):
    """Redacts URL attributes and adds `http.url` to HTTP server spans.

    Instrumentations pass URLs as start attributes, so `on_start` does the work. A URL set
    later is caught at `_on_ending` (the SDK hook that runs before any exporter sees the span),
    which redoes it only when one of the attributes it reads is no longer the object `on_start`
    left there; the SDK has already frozen the attributes there, so that rare path writes
    through the frozen mapping of the pinned SDK version.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if type(span) is _FAST_SPAN:  # fast_span's spans: fields read directly, one pass
            if span._hyperdx_url_fields is not None:
                return  # started with what prepare_server left in its attributes: done
            kind = span._kind
            if kind is not _SERVER and kind is not _CLIENT:
                return
            stored: Any = span._attributes
            plain = stored._dict if type(stored) is _BOUNDED else None
            if type(plain) is dict:
                self._start_plain(span, kind, stored, plain)
                return
            updates = self._fixed(kind, span.attributes or {})
            plain = None
        else:
            kind, plain = span.kind, _plain_attributes(span)
            if kind is not _SERVER and kind is not _CLIENT:
                return  # URLs live on server and client spans only
            updates = self._updates(span)
        for key, value in updates.items():
            if type(value) is str:
                set_str_at_start(span, key, value)
            else:
                span.set_attribute(key, value)
        # Remember the values now stored under the keys `_updates` fixes: while `_on_ending`
        # finds the very same objects there, a second pass would change nothing (each
        # redaction is idempotent, and a present `http.url` is never rebuilt).
        if plain is not None and (kind is _CLIENT or "http.url" in plain):
            try:  # noqa: SIM105 - contextlib.suppress costs a context manager per span
                span._hyperdx_url_fields = tuple(map(plain.get, _URL_KEYS))  # type: ignore[attr-defined]
            except AttributeError:  # a span class with __slots__: `_on_ending` redoes the work
                pass

    def prepare_server(self, attrs: dict[str, Any], origin: str) -> tuple[Any, ...] | None:
        """:meth:`on_start`'s work for a SERVER span, done on the plain ``attrs`` it is about
        to start with (the lean server middleware's, ``server.wsgi.start_server_span``):
        ``http.url`` added and the URL attributes redacted in ``attrs``, in the order
        :meth:`_start_plain` stores them. ``origin``: :func:`server_origin` of ``attrs``
        (memoised per request head by the caller). Returns what ``_hyperdx_url_fields`` must
        hold (``fast_span.start_span(url_fields=...)``, which makes ``on_start`` skip the span),
        or None, ``attrs`` untouched, when ``on_start`` must do it (a present ``http.url`` or
        ``url.full``, no target). ``_on_ending`` still catches a URL set later.

        Only for spans no other processor adds attributes to before this one's ``on_start``
        (the caller checks: our processors, a parent context without baggage)."""
        get = attrs.get
        target = given = get("http.target")
        if target is None:
            path = get("url.path")
            if path is None:
                return None
            query = get("url.query")
            target = f"{path}?{query}" if query else path
        if "http.url" in attrs or get("url.full") is not None:
            return None
        url = request_url(origin, target)
        redactor = self._redactor
        # The Redactor's own first test: a text without "?" (and a URL without "@") is
        # returned as it is, so the common request skips the calls (same result).
        attrs["http.url"] = url = redactor.url(url) if "?" in url or "@" in url else url
        target = given
        if target is not None and isinstance(target, str) and ("?" in target or "@" in target):
            clean = redactor.target(target)
            if clean != target:
                del attrs["http.target"]  # moves to the end, as on_start's update does
                attrs["http.target"] = target = clean
        query = get("url.query")
        if query is not None and isinstance(query, str):
            clean = redactor.query(query)
            if clean != query:
                del attrs["url.query"]
                attrs["url.query"] = query = clean
        return (url, None, target, query)

    def _start_plain(self, span: Any, kind: SpanKind, stored: Any, plain: dict[str, Any]) -> None:
        """:meth:`on_start` for a fast span whose attributes are its plain dict: the updates
        are stored as ``set_str_at_start`` would (a new span: not ended, no other thread)."""
        updates = self._fixed(kind, plain)
        if updates:
            maxlen, max_value_len = stored.maxlen, stored.max_value_len
            for key, value in updates.items():
                if (
                    type(value) is str
                    and fast_span.ENABLED
                    and not stored._immutable
                    and (max_value_len is None or len(value) <= max_value_len)
                    and (maxlen is None or len(plain) < maxlen or key in plain)
                ):
                    plain.pop(key, None)  # an existing key moves to the end, as in the SDK
                    plain[key] = value
                elif type(value) is str:
                    set_str_at_start(span, key, value)
                else:
                    span.set_attribute(key, value)
        if kind is _CLIENT or "http.url" in plain:
            span._hyperdx_url_fields = tuple(map(plain.get, _URL_KEYS))

    def _on_ending(self, span: Span) -> None:
        if type(span) is _FAST_SPAN:
            kind = span._kind
            stored: Any = span._attributes
            plain = stored._dict if type(stored) is _BOUNDED else None
            if type(plain) is not dict:
                plain = None
            seen = span._hyperdx_url_fields  # None (the class's) until on_start sets it
            # Equal values suffice here: the fixes only rewrite str values, and an equal str
            # gives the same (idempotent) result; comparing the tuple is cheaper than `is_`.
            if seen is not None and plain is not None and tuple(map(plain.get, _URL_KEYS)) == seen:
                return
        else:
            kind, plain = span.kind, _plain_attributes(span)
            seen = getattr(span, "_hyperdx_url_fields", None)
        if kind is not _SERVER and kind is not _CLIENT:
            return
        # Identity, not equality (`True == 1`); an equal value set again is just redone.
        if (
            seen is not None
            and plain is not None
            and all(map(is_, map(plain.get, _URL_KEYS), seen))
        ):
            return
        updates = self._updates(span)
        if not updates:
            return
        frozen: Any = getattr(span, "_attributes", None)
        if frozen is None or not hasattr(frozen, "_immutable"):
            return
        frozen._immutable = False
        try:
            frozen._set_items(updates)
        finally:
            frozen._immutable = True

    def end_check(
        self,
        kind: SpanKind,
        plain: dict[str, Any],
        maxlen: int | None,
        max_value_len: int | None,
        seen: tuple[Any, ...] | None,
    ) -> tuple[dict[str, Any], int] | None:
        """:meth:`_on_ending` for an ended span queued as a snapshot (``export._spans``), run
        by the export thread on its frozen attribute dict instead of by the request thread at
        ``end``: None when the span is exported as it is (the usual case: its URL attributes
        are the ones ``on_start`` left, ``seen``), else the attributes to export, fixed as
        ``_on_ending``'s write would have fixed them (same order, same limits), and their
        dropped count. The span's own dict is left as the app set it.

        Only for spans no other processor sees (the composite checks): they would read the
        span before the export thread has run this."""
        if kind is not _SERVER and kind is not _CLIENT:
            return None
        if seen is not None and tuple(map(plain.get, _URL_KEYS)) == seen:
            return None
        updates = self._fixed(kind, plain)
        if not updates:
            return None
        fixed = BoundedAttributes(maxlen, plain, immutable=False, max_value_len=max_value_len)
        fixed._set_items(updates)
        return dict(fixed._dict), fixed.dropped

    def _updates(self, span: Span) -> dict[str, Any]:
        kind, plain = _kind_and_attributes(span)
        return self._fixed(kind, plain if plain is not None else (span.attributes or {}))

    def _fixed(self, kind: SpanKind, attrs: Any) -> dict[str, Any]:
        """The attributes to set on a span of ``kind`` holding ``attrs``: ``http.url`` built
        (server spans), URL attributes redacted."""
        updates: dict[str, Any] = {}
        get = attrs.get
        redactor = self._redactor
        value = get("http.url")
        if kind is _SERVER and "http.url" not in attrs:
            url = _server_url(attrs)
            if url is not None:
                updates["http.url"] = redactor.url(url)
        elif value is not None and isinstance(value, str):
            clean = redactor.url(value)
            if clean != value:
                updates["http.url"] = clean
        value = get("url.full")
        # (`is not None` first: most of these keys are absent, and isinstance is a call.)
        if value is not None and isinstance(value, str):
            clean = redactor.url(value)
            if clean != value:
                updates["url.full"] = clean
        value = get("http.target")
        if value is not None and isinstance(value, str):
            clean = redactor.target(value)
            if clean != value:
                updates["http.target"] = clean
        value = get("url.query")
        if value is not None and isinstance(value, str):
            clean = redactor.query(value)
            if clean != value:
                updates["url.query"] = clean
        return updates

    def on_end(self, span: ReadableSpan) -> None:
        pass


class LogHygieneProcessor(LogRecordProcessor):
    """Scrubs `key=value` secrets from string log bodies (access-log lines, for instance)."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        body = record.body
        if isinstance(body, str) and ("=" in body or ":" in body):
            clean = self._redactor.text(body)
            if clean is not body:
                record.body = clean

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def exemplar_filter() -> ExemplarFilter | None:
    """No exemplars unless OTEL_METRICS_EXEMPLAR_FILTER asks: an exemplar re-exports, as its
    "filtered attributes", exactly what the views above drop (URLs with their secrets)."""
    if os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "").strip():
        return None
    return AlwaysOffExemplarFilter()


def metric_views() -> list[View]:
    """HTTP client metrics keep bounded, URL-free attributes."""
    views = [View(instrument_name="http.client.*", attribute_keys=set(CLIENT_METRIC_ATTRIBUTES))]
    _OUR_VIEWS.update(views)
    _quiet_cross_scope_view_warning()
    return views


_OUR_VIEWS: weakref.WeakSet[View] = weakref.WeakSet()
_VIEW_CONFLICT = "Views %s and %s will cause conflicting metrics identities"


class _CrossScopeViewConflicts(logging.Filter):
    """Drops the SDK's "conflicting metrics identities" warning about our own views.

    Each client library (requests, urllib, urllib3, httpx, aiohttp) records its own
    ``http.client.duration`` from its own meter; the SDK compares every match of a view by
    name only and warns once per worker and library pair, although the series are exported
    under different instrumentation scopes and never mix.  The same warning about the app's
    own views is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != _VIEW_CONFLICT or not isinstance(record.args, tuple):
            return True
        return not all(arg in _OUR_VIEWS for arg in record.args)


_quiet_lock = threading.Lock()
_quieted = False


def _quiet_cross_scope_view_warning() -> None:
    global _quieted
    with _quiet_lock:
        if _quieted:
            return
        _quieted = True
    logging.getLogger(_SDK_METRIC_STORAGE_LOGGER).addFilter(_CrossScopeViewConflicts())


_SDK_METRIC_STORAGE_LOGGER = "opentelemetry.sdk.metrics._internal.metric_reader_storage"
