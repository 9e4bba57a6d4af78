"""WSGI: request attributes from the environ, and the middleware for any WSGI app.

Produces what contrib's ``opentelemetry.instrumentation.wsgi.OpenTelemetryMiddleware`` produces,
reading the environ once per request and building the attributes in one dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from timeit import default_timer
from typing import Any
from wsgiref.util import request_uri

from opentelemetry import context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagate import extract, get_global_textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace import Tracer as _SDK_TRACER
from opentelemetry.sdk.trace.sampling import (
    ParentBased,
    ParentBasedTraceIdRatio,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.http import normalize_user_agent

from hyperdx.opentelemetry import fast_context, fast_span
from hyperdx.opentelemetry.hygiene import SpanHygieneProcessor, server_origin
from hyperdx.opentelemetry.server import semconv
from hyperdx.opentelemetry.server.faults import fault
from hyperdx.opentelemetry.server.telemetry import ServerTelemetry

REQ_PREFIX = "http.request.header."
RESP_PREFIX = "http.response.header."


class EnvironGetter(Getter[dict[str, Any]]):
    """Reads propagation headers (``traceparent``, ``baggage``...) from a WSGI environ."""

    def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return None if value is None else [value]

    def keys(self, carrier: dict[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


environ_getter = EnvironGetter()


def request_attributes(environ: dict[str, Any], mode: semconv.Mode) -> dict[str, Any]:
    """Span attributes of a WSGI request, as contrib's ``collect_request_attributes``."""
    return request_start(environ, mode)[0]


def request_start(
    environ: dict[str, Any], mode: semconv.Mode
) -> tuple[dict[str, Any], semconv.ActiveKey]:
    """:func:`request_attributes` and their active-requests key (``semconv.active_attrs``)."""
    attrs, active, _, _ = request_start_plain(environ, mode)
    return attrs, active


def request_start_plain(
    environ: dict[str, Any], mode: semconv.Mode
) -> tuple[dict[str, Any], semconv.ActiveKey, bool, str | None]:
    """:func:`request_start`, whether every attribute value is a ``str`` or an ``int``
    (plain: what the SDK stores unchanged, ``fast_span.start_span(plain=True)``; and no
    ``True == 1`` or ``1.0 == 1`` among them, ``ServerTelemetry.record(str_int=True)``), and
    the head's ``hygiene.server_origin`` (``start_server_span(origin=...)``).

    Runs on every request, so the attributes that depend only on the server and the method
    (method, server name, scheme, host, port; the protocol version), which are also all the
    active-requests attributes, are computed once per combination (:func:`_head`) and copied;
    the per-request ones are set inline. The key is then the same object for every request
    of a combination."""
    get = environ.get
    old, new = mode.old, mode.new
    key: tuple[Any, ...] = (
        old,
        new,
        get("REQUEST_METHOD"),
        get("SERVER_NAME"),
        get("wsgi.url_scheme"),
        get("HTTP_HOST"),
        get("SERVER_PORT"),
        get("SERVER_PROTOCOL"),
    )
    try:
        found = _HEADS.get(key)
    except TypeError:  # an unhashable environ value (not PEP 3333): computed, not memoized
        found = _head(key, mode, remember=False)
    if found is None:
        found = _head(key, mode)
    head, flavor, active, plain, origin = found
    attrs = head.copy()
    target = get("RAW_URI")
    if target is None:
        target = get("REQUEST_URI")
    if target:
        if old:
            attrs["http.target"] = target
        if new:
            path = get("PATH_INFO")
            if path:
                attrs["url.path"] = path
            query = get("QUERY_STRING")
            if query:
                attrs["url.query"] = query
    elif old:
        attrs["http.url"] = semconv.redact(request_uri(environ))
    remote_addr = get("REMOTE_ADDR")
    if remote_addr:
        if old:
            attrs["net.peer.ip"] = remote_addr
        if new:
            attrs["client.address"] = remote_addr
    peer_port: Any = get("REMOTE_PORT")
    if peer_port:  # semconv.as_int, inlined
        try:
            peer_port = int(peer_port)
        except (TypeError, ValueError):
            peer_port = None
        if peer_port:
            if old:
                attrs["net.peer.port"] = peer_port
            if new:
                attrs["client.port"] = peer_port
    remote_host = get("REMOTE_HOST")
    if remote_host and remote_host != remote_addr:
        if old:
            attrs["net.peer.name"] = remote_host
        if new:
            attrs["client.address"] = remote_host
    agent = get("HTTP_USER_AGENT")
    if agent:
        if type(agent) is not str:  # normalize_user_agent returns a str as it is
            agent = normalize_user_agent(agent)
        if agent:
            semconv.set_user_agent(attrs, agent, old, new)
    if flavor:
        if old:
            attrs["http.flavor"] = flavor
        if new:
            attrs["network.protocol.version"] = flavor
    # The per-request values (the head's were checked once): str or int, or not set. (Checked
    # one by one: a set of their types costs four times as much.)
    if plain:
        plain = (
            (target is None or type(target) is str)
            and (remote_addr is None or type(remote_addr) is str)
            and (remote_host is None or type(remote_host) is str)
            and (agent is None or type(agent) is str)
        )
        if plain and new:
            plain = _PLAIN_OR_NONE.issuperset(map(type, (get("PATH_INFO"), get("QUERY_STRING"))))
    return attrs, active, plain, origin


_PLAIN_OR_NONE = frozenset({str, int, type(None)})
_Head = tuple[dict[str, Any], Any, semconv.ActiveKey, bool, str | None]
_HEADS: dict[tuple[Any, ...], _Head] = {}  # request_attributes' memo, bounded
_MAX_HEADS = 256


def _head(key: tuple[Any, ...], mode: semconv.Mode, remember: bool = True) -> _Head:
    """The leading attributes (method to port), the protocol version, the active-requests
    key and the origin of ``http.url`` (``hygiene.server_origin``) for one combination of
    ``key``'s environ values; memoized while the memo has room."""
    old, new, method, server_name, scheme, host, port, protocol = key
    attrs: dict[str, Any] = {}
    semconv.set_method(attrs, method or "", mode)
    if old and server_name is not None:
        attrs["http.server_name"] = server_name
    if scheme:
        if old:
            attrs["http.scheme"] = scheme
        if new:
            attrs["url.scheme"] = scheme
    if host:
        if old:
            attrs["net.host.name"] = host
            attrs["http.host"] = host
        if new:
            attrs["server.address"] = host
    port = semconv.as_int(port)
    if port:
        if old:
            attrs["net.host.port"] = port
        if new:
            attrs["server.port"] = port
    flavor = protocol or ""
    if flavor.upper().startswith("HTTP/"):
        flavor = flavor[5:]
    # Every active-requests attribute is one of these (or the flavor): the key, made once.
    with_flavor = dict(attrs)
    if flavor:
        if old:
            with_flavor["http.flavor"] = flavor
        if new:
            with_flavor["network.protocol.version"] = flavor
    plain = _PLAIN_OR_NONE.issuperset(map(type, with_flavor.values()))
    origin = server_origin(attrs)
    if type(origin) is not str:
        origin = None
    found = (attrs, flavor, semconv.active_attrs(with_flavor, mode), plain, origin)
    if remember and len(_HEADS) < _MAX_HEADS:
        _HEADS[key] = found
    return found


def request_header_items(environ: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(NAME-WITH-DASHES, value)`` for every ``HTTP_*`` key (contrib's naming)."""
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-"), value


def response_header_items(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Response headers folded by lower-cased name, repeated values joined with ``,``."""
    folded: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        folded[name] = folded[name] + "," + value if name in folded else value
    return list(folded.items())


def default_span_name(environ: dict[str, Any]) -> str:
    """``METHOD /path``, as contrib's WSGI default (``HTTP`` alone for unknown methods)."""
    method = semconv.sanitize_method((environ.get("REQUEST_METHOD", "") or "").strip())
    if method == "_OTHER":
        return "HTTP"
    path = (environ.get("PATH_INFO", "") or "").strip()
    return f"{method} {path}" if method and path else method


_DEFAULT_PROPAGATORS = (TraceContextTextMapPropagator, W3CBaggagePropagator)
_checked: tuple[Any, bool] = (None, False)  # (global propagator seen last, is it the default)


def _default_propagator() -> bool:
    """Whether the global propagator is the SDK's default (exactly tracecontext + baggage).

    Then a request with neither ``traceparent`` nor ``baggage`` extracts to an empty context and
    extraction can be skipped; any other propagator (b3, jaeger, a custom one) always runs.
    """
    global _checked
    textmap = get_global_textmap()
    seen, default = _checked
    if textmap is not seen:
        inner = getattr(textmap, "_propagators", None)
        default = (
            type(textmap) is CompositePropagator
            and isinstance(inner, (list, tuple))
            and tuple(type(p) for p in inner) == _DEFAULT_PROPAGATORS
        )
        _checked = (textmap, default)
    return default


def start_server_span(
    tracer: trace.Tracer,
    name: str,
    carrier: Any,
    getter: Getter[Any],
    attrs: dict[str, Any],
    start_time: int | None = None,
    extra: tuple[str, Any] | None = None,
    *,
    current: context.Context | None = None,
    incoming: bool | None = None,
    plain: bool = False,
    origin: str | None = None,
) -> tuple[trace.Span, context.Context]:
    """A SERVER span continuing the incoming trace, or INTERNAL under an active span.

    Returns the span and the context to attach: the parent's, with the span set in it (and
    ``extra``, a ``(key, value)`` context entry, if given), made in one copy. ``current``: the
    current context if the caller has it; ``incoming``: whether ``carrier`` holds a
    ``traceparent`` or ``baggage`` header, if the caller knows (else the getter is asked);
    ``plain``: every value in ``attrs`` is known to be a ``str`` or an ``int`` (``fast_span``);
    ``origin``: ``hygiene.server_origin(attrs)`` if the caller has it memoised: then a SERVER
    span whose parent holds no baggage gets ``http.url`` and its redacted URL attributes in
    ``attrs`` here, as the hygiene processor's ``on_start`` would add them
    (``SpanHygieneProcessor.prepare_server``), and that ``on_start`` skips it."""
    if current is None:
        current = fast_context.get_current()
    active = current.get(_SPAN_KEY)
    if active is None or active is trace.INVALID_SPAN or not isinstance(active, trace.Span):
        if incoming is not None:
            pass
        elif getter is environ_getter:  # EnvironGetter.get's keys, without the calls
            incoming = (
                carrier.get("HTTP_TRACEPARENT") is not None
                or carrier.get("HTTP_BAGGAGE") is not None
            )
        else:
            incoming = bool(getter.get(carrier, "traceparent") or getter.get(carrier, "baggage"))
        if not incoming and _default_propagator():
            parent = _EMPTY  # what the default propagator returns without them
            no_baggage = True
        elif (
            getter is environ_getter
            and type(carrier.get("HTTP_TRACEPARENT")) is str
            and carrier.get("HTTP_TRACESTATE") is None
            and carrier.get("HTTP_BAGGAGE") is None
            and _default_propagator()
        ):
            parent = _traceparent_context(carrier["HTTP_TRACEPARENT"])
            no_baggage = True
        else:
            parent = extract(carrier, getter=getter)
            no_baggage = False
        kind = _SERVER
    else:
        parent = current
        kind = SpanKind.INTERNAL
        no_baggage = False  # not a server span: no http.url
    url_fields = None
    if origin is not None and no_baggage:
        plan = _URL_PLANS.get(tracer)
        if plan is None:
            plan = _url_plan(tracer)
        if (
            plan is not _NO_PLAN
            and plan[0]._span_processors is plan[1]  # still only our processors
            and (plan[3] is None or len(attrs) < plan[3])  # room for http.url
        ):
            # Then the processors' on_start has nothing left to do: fast_span skips it.
            url_fields = plan[2].prepare_server(attrs, origin)
    span = fast_span.start_span(
        tracer, name, parent, kind, attrs, start_time, plain=plain, url_fields=url_fields
    )
    if parent is _EMPTY:  # the usual request: nothing to copy from the parent
        if extra is None:
            return span, context.Context({_SPAN_KEY: span})
        return span, context.Context({_SPAN_KEY: span, extra[0]: extra[1]})
    if extra is None:  # trace.set_span_in_context(span, parent)
        return span, context.Context({**parent, _SPAN_KEY: span})
    return span, context.Context({**parent, _SPAN_KEY: span, extra[0]: extra[1]})


_Plan = tuple[Any, Any, SpanHygieneProcessor, "int | None"]
_NO_PLAN: Any = ()
_URL_PLANS: dict[Any, _Plan] = {}  # per tracer (a few per process), bounded
_MAX_PLANS = 64


def _url_plan(tracer: Any) -> _Plan:
    """Whether ``tracer``'s server spans may take ``http.url`` from :func:`start_server_span`:
    (our span processors, their processor tuple, their hygiene processor, the span attribute
    count limit), or ``_NO_PLAN``. Only when the span will start with exactly the caller's
    attributes and the hygiene processor is the first to change them: an SDK tracer on
    ``fast_span``'s path, our processors (``traces.HyperDXSpanProcessors``, checked again per
    request), a sampler that passes the attributes through unread, no value length limit."""
    from hyperdx.opentelemetry.traces import HyperDXSpanProcessors

    plan: Any = _NO_PLAN
    processors = getattr(tracer, "span_processor", None)
    if (
        type(tracer) is _SDK_TRACER
        and fast_span.ENABLED
        and type(processors) is HyperDXSpanProcessors
        and _attribute_blind(tracer.sampler)
        and tracer._span_limits.max_span_attribute_length is None
    ):
        ours = processors._span_processors
        hygiene = [p for p in ours if type(p) is SpanHygieneProcessor]
        if ours is processors._ours and len(hygiene) == 1:  # noqa: SLF001
            plan = (processors, ours, hygiene[0], tracer._span_limits.max_span_attributes)
    if len(_URL_PLANS) < _MAX_PLANS:
        _URL_PLANS[tracer] = plan
    return plan


def _attribute_blind(sampler: Any) -> bool:
    """The SDK's stock samplers (always on/off, trace id ratio, parent-based over those):
    they neither read the attributes nor add any (a sampler that does sees them before
    ``on_start``, so the hygiene processor's additions must come after)."""
    if type(sampler) in (ParentBased, ParentBasedTraceIdRatio):
        return all(
            _attribute_blind(getattr(sampler, name, None))
            for name in (
                "_root",
                "_remote_parent_sampled",
                "_remote_parent_not_sampled",
                "_local_parent_sampled",
                "_local_parent_not_sampled",
            )
        )
    return type(sampler) in (StaticSampler, TraceIdRatioBased)


def _traceparent_context(header: str) -> context.Context:
    """What the default propagator (tracecontext + baggage) extracts from a request whose only
    propagation header is this ``traceparent``: ``TraceContextTextMapPropagator.extract``'s
    rules, read with its own pattern, without the composite's loop, the getter calls, the
    ``tracestate`` and ``baggage`` look-ups and the context copies (an empty context when the
    header is not valid; ``tests/server/test_wsgi_fast_paths.py`` compares both)."""
    match = _TRACEPARENT.search(header)
    if not match:
        return _EMPTY
    version, trace_id, span_id, flags, rest = match.groups()
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID or version == "ff":
        return _EMPTY
    if version == "00" and rest:
        return _EMPTY
    span_context = trace.SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(int(flags, 16)),
        trace_state=None,
    )
    return context.Context({_SPAN_KEY: trace.NonRecordingSpan(span_context)})


_TRACEPARENT = TraceContextTextMapPropagator._TRACEPARENT_HEADER_FORMAT_RE  # noqa: SLF001
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
_SERVER = SpanKind.SERVER  # a global load is cached, a class attribute load is not
_EMPTY = context.Context()  # immutable: shared as every request's empty parent
# The key trace.set_span_in_context stores the span under (taken from the public API).
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, context.Context())))


class OpenTelemetryWSGIMiddleware:
    """Traces any WSGI app: ``app = OpenTelemetryWSGIMiddleware(app)``.

    Same arguments and telemetry as contrib's WSGI ``OpenTelemetryMiddleware``: ``request_hook
    (span, environ)``, ``response_hook(span, environ, status, response_headers)``.
    """

    def __init__(
        self,
        wsgi: Callable[..., Any],
        request_hook: Callable[..., None] | None = None,
        response_hook: Callable[..., None] | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        self.wsgi = wsgi
        self.request_hook = request_hook
        self.response_hook = response_hook
        self.telemetry = ServerTelemetry(
            "opentelemetry.instrumentation.wsgi", "wsgi", tracer_provider, meter_provider
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        t = self.telemetry
        try:
            mode = t.mode
            attrs, active, plain, origin = request_start_plain(environ, mode)
            span, ctx = start_server_span(
                t.tracer,
                default_span_name(environ),
                environ,
                environ_getter,
                attrs,
                plain=plain,
                origin=origin,
            )
            if t.headers.request is not None and semconv.is_server(span):
                _set_custom(
                    span,
                    t.headers.attributes(
                        t.headers.request, REQ_PREFIX, request_header_items(environ)
                    ),
                )
        except Exception as exc:  # noqa: BLE001 - never the app's problem
            fault("wsgi.start", exc)
            return self.wsgi(environ, start_response)
        if self.request_hook:
            self.request_hook(span, environ)
        token = fast_context.attach(ctx)
        response_hook = self.response_hook

        def _start_response(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            try:
                code, text = semconv.status_code_of(status.split(" ", 1)[0])
                semconv.set_status(span, attrs, code, text, mode)
                if t.headers.response is not None and semconv.is_server(span):
                    _set_custom(
                        span,
                        t.headers.attributes(
                            t.headers.response, RESP_PREFIX, response_header_items(headers)
                        ),
                    )
            except Exception as exc:  # noqa: BLE001
                fault("wsgi.start_response", exc)
            if response_hook:
                response_hook(span, environ, status, headers)
            return start_response(status, headers, *args)

        start = default_timer()
        cell = t.active.cell_of(active)  # an unhashable key counts under the overflow set
        cell.append(None)  # active requests +1
        try:
            iterable = self.wsgi(environ, _start_response)
            return _end_after_iterating(iterable, span, token)
        except Exception as exc:
            semconv.record_exception(span, exc)
            if mode.new:
                attrs["error.type"] = type(exc).__qualname__
                if span.is_recording():
                    span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
            span.end()
            fast_context.detach(token)
            raise
        finally:
            cell.pop()  # active requests -1
            try:
                t.record(default_timer() - start, attrs, span)
            except Exception as exc:  # noqa: BLE001
                fault("wsgi.metrics", exc)


def _set_custom(span: trace.Span, attrs: dict[str, list[str]]) -> None:
    if attrs:
        span.set_attributes(attrs)


def _end_after_iterating(iterable: Iterable[Any], span: trace.Span, token: object) -> Iterator[Any]:
    try:
        yield from iterable
    finally:
        try:
            close = getattr(iterable, "close", None)
            if close:
                close()
        finally:
            span.end()
            fast_context.detach(token)  # type: ignore[arg-type,unused-ignore]
