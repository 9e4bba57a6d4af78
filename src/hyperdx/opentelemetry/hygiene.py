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
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, ExemplarFilter
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind

from hyperdx.opentelemetry.capture.redact import Redactor, get_redactor
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


_HTTP_KINDS = frozenset({SpanKind.SERVER, SpanKind.CLIENT})


def redactor_for(settings: Settings) -> Redactor:
    return get_redactor(settings.capture_redact.value, settings.capture_redact_patterns.value)


def _server_url(attrs: Any) -> str | None:
    """Rebuild the request URL of a server span from the old or the new conventions."""
    scheme = attrs.get("http.scheme") or attrs.get("url.scheme")
    host = attrs.get("http.host") or attrs.get("server.address") or attrs.get("net.host.name")
    target = attrs.get("http.target")
    if target is None and attrs.get("url.path") is not None:
        query = attrs.get("url.query")
        target = f"{attrs['url.path']}?{query}" if query else attrs["url.path"]
    if not (scheme and host and target is not None):
        return None
    port = attrs.get("server.port") or attrs.get("net.host.port")
    if port and ":" not in str(host) and str(port) not in ("80", "443"):
        host = f"{host}:{port}"
    return f"{scheme}://{host}{target}"


class SpanHygieneProcessor(SpanProcessor):
    """Redacts URL attributes and adds `http.url` to HTTP server spans.

    Instrumentations pass URLs as start attributes, so `on_start` does the work through the
    public API. A URL set later is caught at `_on_ending` (the SDK hook that runs before any
    exporter sees the span); the SDK has already frozen the attributes there, so that rare path
    writes through the frozen mapping of the pinned SDK version.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._fixes = (
            ("http.url", redactor.url),
            ("url.full", redactor.url),
            ("http.target", redactor.target),
            ("url.query", redactor.query),
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        kind = span.kind
        if kind not in _HTTP_KINDS:  # URLs live on server and client spans only
            return
        updates = self._updates(span)
        # One key at a time: set_attributes validates a whole mapping (a copy, ABC checks)
        # for what is usually the single http.url; the stored result is the same.
        for key, value in updates.items():
            span.set_attribute(key, value)

    def _on_ending(self, span: Span) -> None:
        if span.kind not in _HTTP_KINDS:
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

    def _updates(self, span: Span) -> dict[str, Any]:
        # Read the SDK's plain dict when there is one: this runs twice per HTTP span, and
        # `span.attributes` is a mappingproxy over BoundedAttributes, whose Mapping.get is
        # several Python-level calls per key (~10 of them here).
        plain = getattr(getattr(span, "_attributes", None), "_dict", None)
        attrs: Any = plain if isinstance(plain, dict) else (span.attributes or {})
        updates: dict[str, Any] = {}
        if span.kind is SpanKind.SERVER and "http.url" not in attrs:
            url = _server_url(attrs)
            if url is not None:
                updates["http.url"] = url
        for key, fix in self._fixes:
            value = updates.get(key, attrs.get(key))
            if isinstance(value, str):
                clean = fix(value)
                if clean != attrs.get(key):
                    updates[key] = clean
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
