"""Shared machinery: error accounting, span-end deferral and one exchange's capture state."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from hyperdx.opentelemetry import fast_span

from .body import (
    HeaderKeys,
    Tee,
    body_attributes,
    content_length,
    find_header,
    header_attributes,
    header_key,
)
from .config import CaptureConfig
from .redact import Redactor, get_redactor

_logger = logging.getLogger("hyperdx.opentelemetry")

REQ_HEADER = "http.request.header"
RESP_HEADER = "http.response.header"
REQ_BODY = "http.request.body"
RESP_BODY = "http.response.body"

# A span whose body is never finished (a response object kept and never read) is ended anyway
# after this long, with whatever was captured, so it is not lost.
STALE_SECONDS = 60.0

_errors_lock = threading.Lock()
_error_count = 0
_reported: set[tuple[str, str]] = set()


def record_error(site: str, exc: BaseException) -> None:
    """Count a capture failure; log each distinct (site, type) once. The message is not logged:
    it could quote captured data."""
    global _error_count
    key = (site, type(exc).__name__)
    with _errors_lock:
        _error_count += 1
        first = key not in _reported
        _reported.add(key)
    if first:
        _logger.warning(
            "network capture failed in %s (%s); the request was not affected. "
            "Further %s errors there are counted, not logged.",
            site,
            type(exc).__name__,
            type(exc).__name__,
        )


def capture_errors() -> int:
    return _error_count


F = TypeVar("F", bound=Callable[..., Any])


def guarded(site: str) -> Callable[[F], F]:
    """Decorator: a capture failure is counted and reported, never raised into the app."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # capture must never break the application
                record_error(site, exc)
                return None

        return wrapper  # type: ignore[return-value]

    return deco


class Deferred:
    """Holds back ``span.end()`` until the body has been seen, keeping the original end time.

    Instrumentations end client spans when headers arrive and Flask/Django end server spans
    before the WSGI server iterates the response; bodies flow later. We shadow ``end`` on the
    span instance, remember when it was called, and really end the span on ``release()``.
    """

    __slots__ = ("_created", "_done", "_end_time", "_on_stale", "_orig_end", "_released", "_span")

    _registry: dict[int, Deferred] = {}
    _registry_lock = threading.Lock()
    _last_sweep = 0.0

    def __init__(self, span: Any, on_stale: Callable[[], None] | None = None) -> None:
        self._span = span
        self._orig_end = span.end
        self._end_time: int | None = None
        self._released = False
        self._done = False
        self._created = now = time.monotonic()
        self._on_stale = on_stale
        span.end = self._end
        with Deferred._registry_lock:
            Deferred._registry[id(self)] = self
        if now - Deferred._last_sweep >= 5.0:
            self._sweep(now)

    def _end(self, end_time: int | None = None) -> None:
        with _flags_lock:
            if self._end_time is None:
                self._end_time = end_time if end_time is not None else time.time_ns()
            ready = self._released
        if ready:
            self._really_end()

    @property
    def ended(self) -> bool:
        return self._end_time is not None

    def release(self) -> None:
        with _flags_lock:
            if self._released:
                return
            self._released = True
            # Ended already (the usual case): end it for real now, claiming it under this lock.
            ready = self._end_time is not None and not self._done
            if ready:
                self._done = True
        self._restore()
        if ready:
            self._orig_end(end_time=self._end_time)

    def _restore(self) -> None:
        self._on_stale = None  # it holds the exchange, which holds this: break the cycle
        with Deferred._registry_lock:
            Deferred._registry.pop(id(self), None)
        try:  # noqa: SIM105 - contextlib.suppress costs three Python calls a request
            del self._span.end
        except AttributeError:
            pass

    def _really_end(self) -> None:
        with _flags_lock:
            if self._done:
                return
            self._done = True
        self._restore()
        self._orig_end(end_time=self._end_time)

    @classmethod
    def _sweep(cls, now: float, force: bool = False) -> None:
        if not force and now - cls._last_sweep < 5.0:
            return
        cls._last_sweep = now
        with cls._registry_lock:
            stale = [d for d in cls._registry.values() if force or now - d._created > STALE_SECONDS]
        for d in stale:
            if d._on_stale is not None:
                try:
                    d._on_stale()
                except Exception as exc:
                    record_error("stale-span", exc)
            d.release()

    @classmethod
    def release_all(cls) -> None:
        cls._sweep(time.monotonic(), force=True)


def _after_fork_in_child() -> None:
    """Spans waiting for bodies belong to the parent's requests; locks may have been held."""
    global _errors_lock, _finish_lock, _flags_lock
    _errors_lock = threading.Lock()
    _finish_lock = threading.Lock()
    _flags_lock = threading.Lock()
    Deferred._registry_lock = threading.Lock()
    Deferred._registry = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# One place knows the SDK's attribute storage: fast_span.
set_attributes = fast_span.set_plain_attributes


def span_attributes(span: Any) -> Any:
    """A span's current attributes, read cheaply: the SDK's plain dict when there is one
    (``span.attributes`` is a mappingproxy over BoundedAttributes: ~10 Python calls a lookup)."""
    plain = getattr(getattr(span, "_attributes", None), "_dict", None)
    if isinstance(plain, dict):
        return plain
    return getattr(span, "attributes", None) or {}


def _origins(endpoints: tuple[str, ...]) -> frozenset[str] | None:
    """``scheme://netloc`` of each excluded endpoint. A URL that starts with an endpoint has
    that origin when the endpoint has a path; None if one has none (its prefix could end inside
    a host name: only the full comparison is right then)."""
    origins = set()
    for endpoint in endpoints:
        scheme, sep, rest = endpoint.partition("://")
        netloc, slash, _ = rest.partition("/")
        if not (sep and slash):
            return None
        origins.add(f"{scheme}://{netloc}")
    return frozenset(origins)


class Engine:
    """Capture settings plus the compiled redactor, shared by all hooks of one config."""

    def __init__(self, config: CaptureConfig) -> None:
        self.config = config
        self.cap = config.max_body_bytes
        self.redactor: Redactor = get_redactor(config.redact, tuple(config.extra_patterns))
        self.excluded = tuple(e for e in config.excluded_endpoints if e)
        self.excluded_origins = _origins(self.excluded)
        # header name as sent -> (attribute key, is secret), per prefix: names repeat.
        self.header_keys: dict[str, HeaderKeys] = {REQ_HEADER: {}, RESP_HEADER: {}}
        # WSGI environ key -> (request-header attribute key, is secret), None: not a header.
        self.environ_keys: dict[str, tuple[str, bool] | None] = {}
        # The environ's key sequence -> its header-carrying keys (see wsgi.py).
        self.environ_plans: dict[tuple[str, ...], list[tuple[str, str, bool]]] = {}

    def is_excluded(self, url: str | None) -> bool:
        return bool(url) and any(str(url).startswith(e) for e in self.excluded)

    def url_updates(
        self,
        span: Any,
        url: str | Callable[[], str | None] | None,
        target: str | None = None,
        out: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What ensures ``http.url`` (HyperDX shows its network panel on it) and redacts the URL
        attributes: only values that differ from the span's. ``url`` may be a function, called
        only when the span has neither ``http.url`` nor ``url.full``."""
        redactor = self.redactor
        plain = getattr(getattr(span, "_attributes", None), "_dict", None)
        attrs = plain if isinstance(plain, dict) else span_attributes(span)
        updates: dict[str, Any] = {} if out is None else out
        full = attrs.get("http.url") or attrs.get("url.full")
        if not full:
            full = url() if callable(url) else url
        if full:
            value = full if isinstance(full, str) else str(full)
            if "?" in value or "@" in value:  # else redactor.url() has nothing to do
                value = redactor.url(value)
            if value != attrs.get("http.url"):
                updates["http.url"] = value
        old = attrs.get("url.full")
        if old is not None:
            value = redactor.url(str(old))
            if value != old:
                updates["url.full"] = value
        old = attrs.get("http.target")
        old_target = old or target
        if old is not None and old_target:
            value = str(old_target)
            if "?" in value:  # else redactor.target() has nothing to do
                value = redactor.target(value)
            if value != old:
                updates["http.target"] = value
        old = attrs.get("url.query")
        if old is not None:
            value = redactor.query(str(old))
            if value != old:
                updates["url.query"] = value
        return updates

    def set_url(self, span: Any, url: str | None, target: str | None = None) -> None:
        """Ensure ``http.url`` and redact URL attributes on the span now."""
        updates = self.url_updates(span, url, target)
        if updates:
            set_attributes(span, updates)

    def header_key(self, prefix: str, name: Any) -> tuple[str, bool]:
        return header_key(prefix, name, self.redactor, self.header_keys[prefix])

    def header_attributes(
        self,
        prefix: str,
        items: Iterable[tuple[Any, Any]],
        out: dict[str, Any] | None = None,
        firsts: dict[str, str | None] | None = None,
    ) -> dict[str, Any]:
        return header_attributes(
            prefix, items, self.redactor, self.header_keys[prefix], out, firsts
        )

    def headers(self, span: Any, prefix: str, items: Iterable[tuple[Any, Any]]) -> None:
        attrs = self.header_attributes(prefix, items)
        if attrs:
            set_attributes(span, attrs)

    def body(
        self,
        span: Any,
        prefix: str,
        data: bytes,
        size: int | None,
        content_type: str | None,
    ) -> None:
        attrs = body_attributes(prefix, data, size, content_type, self.redactor, self.cap)
        if attrs:
            span.set_attributes(attrs)

    def tee(self) -> Tee:
        return Tee(self.cap)


class Exchange:
    """One request/response being captured onto one span whose end may be deferred.

    Attributes known before the bodies (``pending``) are written with them, in one
    ``set_attributes`` call: the SDK validates and locks per call.
    """

    __slots__ = (
        "__weakref__",
        "_finished",
        "deferred",
        "engine",
        "pending",
        "request",
        "request_seen",
        "request_size",
        "request_type",
        "response",
        "response_seen",
        "response_size",
        "response_type",
        "span",
    )

    def __init__(self, engine: Engine, span: Any, defer: bool) -> None:
        self.engine = engine
        self.span = span
        cap = engine.cap
        self.request = Tee(cap)
        self.response = Tee(cap)
        self.request_type: str | None = None
        self.response_type: str | None = None
        self.request_size: int | None = None
        self.response_size: int | None = None
        self.request_seen = False
        self.response_seen = False
        self.pending: dict[str, Any] | None = None
        self._finished = False
        self.deferred = Deferred(span, self.finish) if defer else None

    def defer(self) -> None:
        """Hold the span's end until ``finish()`` (call before the instrumentation ends it)."""
        if self.deferred is None:
            self.deferred = Deferred(self.span, self.finish)

    def finish(self) -> None:
        """Write body attributes (once) and let the span end."""
        if self._finished:  # set under the lock, never reset: a second call stops here
            return
        with _finish_lock:
            if self._finished:
                return
            self._finished = True
        try:
            self.write_bodies()
        except Exception as exc:
            record_error("finish", exc)
        finally:
            deferred = self.deferred
            if deferred is not None:
                self.deferred = None  # no Exchange <-> Deferred cycle left for the GC
                deferred.release()

    def write_bodies(self) -> None:
        attrs = self.pending if self.pending is not None else {}
        self.pending = None
        try:
            self.body_attributes(attrs)
        finally:  # a body that cannot be formatted still leaves the headers on the span
            if attrs:
                set_attributes(self.span, attrs)

    def body_attributes(self, out: dict[str, Any]) -> None:
        if self.request.size or self.request_seen or self.request_size:
            self._write(
                out, REQ_BODY, self.request, self.request_seen, self.request_size, self.request_type
            )
        if self.response.size or self.response_seen or self.response_size:
            self._write(
                out,
                RESP_BODY,
                self.response,
                self.response_seen,
                self.response_size,
                self.response_type,
            )

    def _write(
        self,
        out: dict[str, Any],
        prefix: str,
        tee: Tee,
        seen: bool,
        hint: int | None,
        content_type: str | None,
    ) -> None:
        """``seen``: the whole body passed the tee. ``hint``: its declared size, if comparable."""
        size = tee.size if seen or hint is None else max(hint, tee.size)
        if tee.size or seen:
            engine = self.engine
            if size > 0 or tee.size:
                out.update(
                    body_attributes(
                        prefix, tee.data, size, content_type, engine.redactor, engine.cap
                    )
                )
        elif hint:
            out[f"{prefix}.size"] = hint


_finish_lock = threading.Lock()  # held only to flip an exchange's "finished" flag
_flags_lock = threading.Lock()  # held only to read/flip a Deferred's flags


class _Switch:
    """``uninstall()`` turns every hook already handed to an instrumentor into a no-op
    (instrumentors keep hooks in class attributes, even across uninstrument/instrument)."""

    off = False


switch = _Switch()


def recording(span: Any) -> bool:
    if switch.off:
        return False
    try:
        return bool(span is not None and span.is_recording())
    except Exception as exc:  # a foreign span implementation
        record_error("is_recording", exc)
        return False


def client_exchange(
    engine: Engine, span: Any, url: str, items: list[tuple[Any, Any]], body: Any
) -> Exchange:
    """Start capturing a client request whose body is known up front (requests, urllib,
    urllib3): URL, request headers, and the body when it is bytes or text (else its size)."""
    ex = Exchange(engine, span, defer=False)
    engine.set_url(span, url)
    engine.headers(span, REQ_HEADER, items)
    ex.request_type = find_header(items, "content-type")
    if isinstance(body, (bytes, bytearray, str)):
        ex.request.feed(body)
        ex.request_seen = True
    else:
        ex.request_size = content_length(find_header(items, "content-length"))
    return ex
