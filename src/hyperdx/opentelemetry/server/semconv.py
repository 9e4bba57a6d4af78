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


def set_method(attrs: dict[str, Any], original: str, mode: Mode) -> str:
    """Method attributes; returns the normalised method (for the span name)."""
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


def set_status(span: Span, metric_attrs: dict[str, Any], code: int, text: str, mode: Mode) -> None:
    """Status code attributes (span and metrics) and span status, as contrib's _set_status."""
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


_ACTIVE_KEYS = {
    (old, new): (ACTIVE_OLD if old else frozenset()) | (ACTIVE_NEW if new else frozenset())
    for old in (False, True)
    for new in (False, True)
}


ActiveKey = tuple[tuple[str, Any], ...]


def active_attrs(attrs: Mapping[str, Any], mode: Mode) -> ActiveKey:
    """The active-requests attributes as the counter's key, built once per request (used for
    both the +1 and the -1)."""
    keys = _ACTIVE_KEYS[mode.old, mode.new]
    return tuple([item for item in attrs.items() if item[0] in keys])


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


def record_duration(
    old: Any,
    new: Any,
    seconds: float,
    attrs: Mapping[str, Any],
    context: Any,
    old_extra: Mapping[str, Any] | None = None,
    new_extra: Mapping[str, Any] | None = None,
) -> None:
    """Both duration histograms, each with its own attribute filter (contrib's rule)."""
    if old is not None:
        a = pick(attrs, DURATION_OLD)
        if old_extra:
            a.update(old_extra)
        old.record(max(round(seconds * 1000), 0), a, context=context)
    if new is not None:
        a = pick(attrs, DURATION_NEW)
        if new_extra:
            a.update(new_extra)
        new.record(max(seconds, 0), a, context=context)
