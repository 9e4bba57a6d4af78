"""What contrib's server instrumentations record, computed once per app instead of per request.

The semantic-convention mode is read the way contrib reads it (``OTEL_SEMCONV_STABILITY_OPT_IN``:
old keys by default, ``http`` new keys, ``http/dup`` both). Attribute keys, metric names, units,
descriptions and attribute filters follow contrib 0.66b1 field by field.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.instrumentation._semconv import (
    HTTP_DURATION_HISTOGRAM_BUCKETS_NEW,
    _get_schema_url,
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
    _StabilityMode,
)
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
    OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS,
    detect_synthetic_user_agent,
    get_custom_headers,
    redact_url,
)

from hyperdx.opentelemetry.fast_span import RECORDING_UNTIL_ENDED

KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"}
)

# Old (default) and new (http) metric attribute filters, as contrib's _semconv lists them.
DURATION_OLD = frozenset(
    {
        "http.method",
        "http.host",
        "http.scheme",
        "http.status_code",
        "http.flavor",
        "http.server_name",
        "net.host.name",
        "net.host.port",
    }
)
DURATION_NEW = frozenset(
    {
        "error.type",
        "http.request.method",
        "http.response.status_code",
        "http.route",
        "network.protocol.version",
        "url.scheme",
    }
)
ACTIVE_OLD = frozenset(
    {"http.method", "http.host", "http.scheme", "http.flavor", "http.server_name"}
)
ACTIVE_NEW = frozenset({"http.request.method", "url.scheme"})

ACTIVE_DESCRIPTION = "Number of active HTTP server requests."
ACTIVE_DESCRIPTION_FLASK_OLD = (
    "Measures the number of concurrent HTTP requests that are currently in-flight."
)


@dataclass(frozen=True)
class Mode:
    """Which keys to emit: old (default), new (``http``) or both (``http/dup``)."""

    old: bool
    new: bool
    schema_url: str

    @property
    def new_only(self) -> bool:
        return self.new and not self.old


def current_mode() -> Mode:
    """The HTTP semconv mode exactly as contrib resolves it (once per process)."""
    _OpenTelemetrySemanticConventionStability._initialize()
    mode = _OpenTelemetrySemanticConventionStability._get_opentelemetry_stability_opt_in_mode(
        _OpenTelemetryStabilitySignalType.HTTP
    )
    return Mode(
        old=mode not in (_StabilityMode.HTTP, _StabilityMode.DATABASE),
        new=mode != _StabilityMode.DEFAULT,
        schema_url=_get_schema_url(mode),
    )


def sanitize_method(method: str) -> str:
    """contrib's method normalisation: known methods upper-cased, anything else ``_OTHER``."""
    upper = method.upper()
    if upper in KNOWN_METHODS or os.environ.get(
        OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS
    ):
        return upper
    return "_OTHER"


@functools.lru_cache(maxsize=256)
def synthetic_type(user_agent: str) -> str | None:
    """``user_agent.synthetic.type`` for a user agent (few distinct values: cached)."""
    return detect_synthetic_user_agent(user_agent)


def set_user_agent(attrs: dict[str, Any], agent: str, old: bool, new: bool) -> None:
    """The User-Agent attributes of a server span (WSGI and ASGI), in contrib's order."""
    if old:
        attrs["http.user_agent"] = agent
    if new:
        attrs["user_agent.original"] = agent
    synthetic = synthetic_type(agent)
    if synthetic:
        attrs["user_agent.synthetic.type"] = synthetic


def set_method(attrs: dict[str, Any], original: str, mode: Mode) -> str:
    """Method attributes; returns the normalised method (for the span name)."""
    if original in KNOWN_METHODS:  # the common case: already its own normalised form
        if mode.old:
            attrs["http.method"] = original
        if mode.new:
            attrs["http.request.method"] = original
        return original
    original = original.strip()
    normalised = sanitize_method(original)
    if mode.old:
        attrs["http.method"] = normalised
    if mode.new:
        attrs["http.request.method"] = normalised
        if original and original != normalised:
            attrs["http.request.method_original"] = original
    return normalised


def redact(url: str) -> str:
    """contrib's ``redact_url``, which only changes URLs with credentials (``@``) or a query
    (``?``): the common URL without either skips its two ``urlparse`` calls."""
    if "@" not in url and "?" not in url:
        return url
    return redact_url(url)


def span_name(method: str, target: str | None) -> str:
    """``METHOD target``, ``HTTP target`` for unknown methods, or the method alone."""
    if method == "_OTHER":
        method = "HTTP"
    if method and target:
        return f"{method} {target}"
    return method or (target or "")


def as_int(value: Any) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def status_code_of(value: Any) -> tuple[int, str]:
    """(code, text) from an int or a WSGI status line; -1 if it is not a number."""
    text = str(value)
    try:
        return int(text), text
    except ValueError:
        return -1, text


STATUS_LINES: dict[str, tuple[int, str]] = {}
_MAX_STATUS_LINES = 256


def wsgi_status(status: str) -> tuple[int, str]:
    """:func:`status_code_of` the code of a WSGI status line (``"200 OK"``), memoized: an app
    sends few distinct lines (bounded, so odd ones cannot grow it)."""
    found = STATUS_LINES.get(status)
    if found is None:
        found = status_code_of(status.split(" ", 1)[0])
        if len(STATUS_LINES) < _MAX_STATUS_LINES:
            STATUS_LINES[status] = found
    return found


def set_status(span: Span, metric_attrs: dict[str, Any], code: int, text: str, mode: Mode) -> None:
    """Status code attributes (span and metrics) and span status, as contrib's _set_status."""
    # Span.is_recording() of the SDK span (and fast_span's), without the call.
    if type(span) in RECORDING_UNTIL_ENDED:
        recording = span._end_time is None  # type: ignore[attr-defined]
    else:
        recording = span.is_recording()
    if code < 0:
        if mode.new:
            metric_attrs["error.type"] = text
            if recording:
                span.set_attribute("error.type", text)
        if recording:
            span.set_status(Status(StatusCode.ERROR, "Non-integer HTTP status: " + text))
        return
    error = code < 100 or code >= 500
    if not error and mode.old and not mode.new:  # the common case: one attribute
        metric_attrs["http.status_code"] = code
        if recording:
            span.set_attribute("http.status_code", code)
        return
    updates: dict[str, Any] = {}
    if mode.old:
        updates["http.status_code"] = code
    if mode.new:
        updates["http.response.status_code"] = code
        if error:
            updates["error.type"] = text
    metric_attrs.update(updates)
    if recording:
        for key, value in updates.items():  # one by one: the SDK cleans a mapping recursively
            span.set_attribute(key, value)
        if error:  # the SDK ignores UNSET, so contrib's UNSET call is skipped
            span.set_status(Status(StatusCode.ERROR))


def record_exception(span: Span, exc: BaseException) -> None:
    """What ``trace.use_span`` does when an exception leaves it (contrib relies on it)."""
    if span.is_recording() and isinstance(exc, Exception):
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def is_server(span: Any) -> bool:
    """Header capture is for SERVER spans only (an INTERNAL one nests under another server)."""
    return getattr(span, "kind", None) is SpanKind.SERVER


def pick(attrs: Mapping[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k in keys}


def in_order(
    order: tuple[str, ...], old: frozenset[str], new: frozenset[str]
) -> dict[tuple[bool, bool], tuple[str, ...]]:
    """Per (old, new) mode, the keys of ``order`` that the mode's filter keeps, in that order."""
    assert set(order) == old | new, "the order must list every key of both filters"
    return {
        (o, n): tuple(key for key in order if (o and key in old) or (n and key in new))
        for o in (False, True)
        for n in (False, True)
    }


# The order in which wsgi.request_attributes (then set_status) adds these keys.
WSGI_ACTIVE_ORDER = in_order(
    ("http.method", "http.request.method", "http.server_name", "http.scheme", "url.scheme")
    + ("http.host", "http.flavor"),
    ACTIVE_OLD,
    ACTIVE_NEW,
)
WSGI_DURATION_OLD_ORDER = in_order(
    ("http.method", "http.server_name", "http.scheme", "net.host.name", "http.host")
    + ("net.host.port", "http.flavor", "http.status_code"),
    DURATION_OLD,
    frozenset(),
)[True, False]
WSGI_DURATION_NEW_ORDER = in_order(
    ("http.request.method", "url.scheme", "network.protocol.version")
    + ("http.response.status_code", "error.type", "http.route"),
    frozenset(),
    DURATION_NEW,
)[False, True]


ActiveKey = tuple[tuple[str, Any], ...]


def pick_in_order(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """:func:`pick` for ``attrs`` that hold ``keys`` in this order (what ``WSGI_*_ORDER``
    says of :func:`wsgi.request_attributes` + :func:`set_status`), read key by key instead
    of scanning every attribute."""
    found: dict[str, Any] = {}
    for key in keys:
        value = attrs.get(key, found)
        if value is not found:
            found[key] = value
    return found


def active_attrs(
    attrs: Mapping[str, Any],
    mode: Mode,
    order: dict[tuple[bool, bool], tuple[str, ...]] = WSGI_ACTIVE_ORDER,
) -> ActiveKey:
    """The active-requests attributes as the counter's key, built once per request (used for
    both the +1 and the -1), in the order ``attrs`` holds them (``order``: how the caller's
    request_attributes adds them), reading only those keys."""
    found: list[tuple[str, Any]] = []
    for key in order[mode.old, mode.new]:
        value = attrs.get(key, found)
        if value is not found:
            found.append((key, value))
    return tuple(found)


class HeaderCapture:
    """The server header-capture variables and the sanitize list, compiled once."""

    def __init__(
        self,
        request: list[str] | None = None,
        response: list[str] | None = None,
        sanitize: list[str] | None = None,
    ) -> None:
        request = request or get_custom_headers(
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST
        )
        response = response or get_custom_headers(
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE
        )
        sanitize = sanitize or get_custom_headers(
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS
        )
        self.request = re.compile("|".join(request), re.IGNORECASE) if request else None
        self.response = re.compile("|".join(response), re.IGNORECASE) if response else None
        self.sanitize = re.compile("|".join(sanitize), re.IGNORECASE) if sanitize else None

    def attributes(
        self, pattern: re.Pattern[str] | None, prefix: str, headers: Iterable[tuple[str, Any]]
    ) -> dict[str, list[str]]:
        """``<prefix><name>: [values]`` for the headers matching ``pattern`` (names as given)."""
        out: dict[str, list[str]] = {}
        if pattern is None:
            return out
        sanitize = self.sanitize
        for name, value in headers:
            if not pattern.fullmatch(name):
                continue
            key = prefix + name.lower().replace("-", "_")
            values = value if isinstance(value, list) else [value]
            if sanitize is not None and sanitize.search(name):
                values = ["[REDACTED]"] * len(values)
            out[key] = list(values)
        return out


def duration_instruments(meter: Any, mode: Mode) -> tuple[Any, Any]:
    """(old ms histogram or None, new s histogram or None)."""
    old = new = None
    if mode.old:
        old = meter.create_histogram(
            name="http.server.duration",
            unit="ms",
            description="Measures the duration of inbound HTTP requests.",
        )
    if mode.new:
        new = meter.create_histogram(
            name="http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=HTTP_DURATION_HISTOGRAM_BUCKETS_NEW,
        )
    return old, new
