"""ASGI: the middleware for any ASGI app, and the one FastAPI and Starlette apps get.

Produces contrib's server span and metrics (``opentelemetry.instrumentation.asgi``) without its
per-message ``http send`` / ``http receive`` spans: the request headers are decoded in one pass
into one mapping (for attributes, propagation and header capture), and ``receive`` is passed to
the app untouched unless a ``client_request_hook`` wants to see the messages.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from timeit import default_timer
from typing import Any

from opentelemetry import context, trace
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY, _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.propagators.textmap import Getter
from opentelemetry.util.http import ExcludeList, parse_excluded_urls

from hyperdx.opentelemetry import fast_context
from hyperdx.opentelemetry.metrics_fast import FastHistogram
from hyperdx.opentelemetry.server import semconv
from hyperdx.opentelemetry.server.faults import fault
from hyperdx.opentelemetry.server.telemetry import Cell, ServerTelemetry
from hyperdx.opentelemetry.server.wsgi import REQ_PREFIX, RESP_PREFIX, start_server_span

Headers = dict[str, list[str]]


def decode(value: bytes | str) -> str:
    """A header name or value as contrib decodes it (UTF-8, else escaped; never raises)."""
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except ValueError:
        return value.decode("unicode_escape", "backslashreplace")


def header_map(raw: Any) -> Headers:
    """``{name: [values]}`` from ASGI ``headers`` (one pass; names lower-cased)."""
    headers: Headers = {}
    if raw:
        for item in raw:
            try:
                name, value = item
                key = name.decode().lower()  # the common case, inline: UTF-8 bytes
                text = value.decode()
            except (AttributeError, TypeError, ValueError):
                try:
                    name, value = item
                except (TypeError, ValueError):
                    continue  # a malformed header entry is skipped, never raised
                key = decode(name).lower()
                text = decode(value)
            found = headers.get(key)
            if found is None:
                headers[key] = [text]
            else:
                found.append(text)
    return headers


def content_length(raw: Any) -> int | None:
    """``header_map(raw)["content-length"][0]`` as an int, without decoding other headers."""
    for item in raw:
        try:
            name, value = item
        except (TypeError, ValueError):
            continue
        if type(name) is bytes:
            # equal to decoding then lower-casing: no non-ASCII character lower-cases into
            # this name, and a name that is not UTF-8 keeps a non-ASCII character
            if len(name) != 14 or name.lower() != b"content-length":
                continue
        elif decode(name).lower() != "content-length":
            continue
        return semconv.as_int(decode(value))
    return None


def instrumentation_enabled() -> bool:
    """contrib's ``is_http_instrumentation_enabled``; an empty context suppresses nothing."""
    return not fast_context.get_current() or is_http_instrumentation_enabled()


_SUPPRESS_INSTRUMENTATION_KEY_PLAIN = "suppress_instrumentation"  # contrib reads it too


class HeaderGetter(Getter[Headers]):
    """Propagation reads from the decoded header mapping."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        return carrier.get(key.lower())

    def keys(self, carrier: Headers) -> list[str]:
        return list(carrier)


header_getter = HeaderGetter()


class _HeaderAppender:
    def set(self, carrier: dict[str, Any], key: str, value: str) -> None:
        headers = carrier.get("headers")
        if not headers:
            headers = []
            carrier["headers"] = headers
        headers.append([key.lower().encode(), value.encode()])


_header_appender = _HeaderAppender()


_DEFAULT_SERVER = ("0.0.0.0", 80)
_SERVERS: dict[Any, tuple[str, Any, int | None]] = {}  # a server's few addresses, bounded
_MAX_SERVERS = 64


def server_address(server: Any) -> tuple[str, Any, int | None]:
    """(``host[:port]`` as contrib writes it, the port, the port as an int) of ``scope["server"]``
    (the same few values on every request: remembered for the usual ``(str, int)``)."""
    usual = type(server) is tuple and len(server) == 2
    if usual and type(server[0]) is str and type(server[1]) is int:
        found = _SERVERS.get(server)
        if found is None:
            if len(_SERVERS) >= _MAX_SERVERS:
                _SERVERS.clear()
            found = _SERVERS[server] = _server_address(server)
        return found
    return _server_address(server)


def _server_address(server: Any) -> tuple[str, Any, int | None]:
    port = server[1]
    suffix = ":" + str(port) if str(port) != "80" else ""
    return str(server[0]) + suffix, port, semconv.as_int(port)


def host_port_url(scope: dict[str, Any], headers: Headers) -> tuple[str, Any, str]:
    """(server host, port, URL without query) as contrib's ``get_host_port_url_tuple``."""
    server_host, port, _ = server_address(scope.get("server") or _DEFAULT_SERVER)
    host = headers.get("host")
    url_host = host[0] if host else server_host
    url = scope.get("scheme", "http") + "://" + url_host + scope.get("path", "")
    return server_host, port, url


def request_attributes(
    scope: dict[str, Any], headers: Headers, mode: semconv.Mode
) -> dict[str, Any]:
    """Span attributes of an ASGI request, as contrib's ``collect_request_attributes``."""
    old, new = mode.old, mode.new
    get = scope.get
    attrs: dict[str, Any] = {}
    server_host, _, port_number = server_address(get("server") or _DEFAULT_SERVER)
    host = headers.get("host")
    path = get("path")
    query = get("query_string")
    if query and isinstance(query, bytes):
        query = decode(query)
    scheme = get("scheme")
    if scheme:
        if old:
            attrs["http.scheme"] = scheme
        if new:
            attrs["url.scheme"] = scheme
    if server_host:
        if old:
            attrs["http.host"] = server_host
        if new:
            attrs["server.address"] = server_host
    if port_number:
        if old:
            attrs["net.host.port"] = port_number
        if new:
            attrs["server.port"] = port_number
    flavor = get("http_version")
    if flavor:
        if old:
            attrs["http.flavor"] = flavor
        if new:
            attrs["network.protocol.version"] = flavor
    if path:
        if old:
            attrs["http.target"] = path
        if new:
            attrs["url.path"] = path
            if query:
                attrs["url.query"] = query
    if old:
        url = get("scheme", "http") + "://" + (host[0] if host else server_host) + get("path", "")
        if query:
            url += "?" + urllib.parse.unquote(query)
        attrs["http.url"] = semconv.redact(url)
    method = get("method", "")
    if method:
        semconv.set_method(attrs, method, mode)
    if host and old:
        attrs["http.server_name"] = host[0] if len(host) == 1 else ",".join(host)
    agent = headers.get("user-agent")
    _client_attrs(attrs, agent[0] if agent else None, get("client"), old, new)
    return attrs


def plain_headers(raw: Any) -> dict[bytes, Any] | None:
    """``{name: value}`` straight from ASGI ``headers`` (built in C, values decoded only when
    read) when that loses nothing against :func:`header_map`: a list of pairs whose names are
    distinct lower-case ASCII bytes, which is what servers send. Else None (the caller decodes
    everything with :func:`header_map`)."""
    if not raw:
        return {}
    if type(raw) is not list and type(raw) is not tuple:
        return None
    try:
        plain = dict(raw)
        names = b"".join(plain)
    except (TypeError, ValueError):
        return None
    if len(plain) != len(raw) or not names.islower() or not names.isascii():
        return None  # a repeated name (values to join), or names to decode and lower-case
    return plain


class PlainHeaderGetter(Getter[dict[bytes, Any]]):
    """Propagation reads from :func:`plain_headers` (the same answers as :class:`HeaderGetter`
    on the header map of the same headers)."""

    def get(self, carrier: dict[bytes, Any], key: str) -> list[str] | None:
        value = carrier.get(key.lower().encode())
        return None if value is None else [decode(value)]

    def keys(self, carrier: dict[bytes, Any]) -> list[str]:
        return [decode(name) for name in carrier]


plain_header_getter = PlainHeaderGetter()


class Head:
    """What the request attributes hold for one (scheme, server, protocol version, method,
    Host header) combination, computed by :func:`request_attributes` at its first request."""

    __slots__ = ("active", "attrs", "cell", "metrics", "plain", "url_prefix")

    def __init__(self, key: tuple[Any, ...], mode: semconv.Mode) -> None:
        scheme, server, version, method, host = key
        scope = {"scheme": scheme, "server": server, "http_version": version, "method": method}
        headers: Headers = {} if host is None else {"host": [decode(host)]}
        attrs = request_attributes(scope, headers, mode)
        attrs.pop("http.url", None)  # per request: the path and query follow the prefix
        self.attrs = attrs  # copied per request, never handed out
        self.active = semconv.active_attrs(attrs, mode, ACTIVE_ORDER)
        self.url_prefix = host_port_url(scope, headers)[2]  # scheme://host
        # Every head attribute a str or an int under a non-empty str key (fast_span's "plain").
        self.plain = _plain_items(attrs)
        self.cell: Cell | None = None  # the active count of self.active (its middleware's)
        # (status, http.target, http.route) -> (old, new) duration attributes, never mutated
        self.metrics: dict[tuple[Any, ...], tuple[dict[str, Any], dict[str, Any], bool]] = {}


_MAX_HEADS = 256  # combinations per middleware; past it, heads are computed, not remembered
_MAX_METRIC_SETS = 64  # (status, target, route) per head


def head_of(
    heads: dict[tuple[Any, ...], Head], scope: dict[str, Any], host: Any, mode: semconv.Mode
) -> Head | None:
    """The remembered :class:`Head` of this request (made at its first request), or None for a
    scope the memo does not cover (no ``scheme`` str, an unhashable value)."""
    scheme = scope.get("scheme")
    if type(scheme) is not str:
        return None
    key = (scheme, scope.get("server"), scope.get("http_version"), scope.get("method"), host)
    try:
        head = heads.get(key)
    except TypeError:
        return None
    if head is None:
        head = Head(key, mode)
        if len(heads) < _MAX_HEADS:
            heads[key] = head
    return head


_STR_INT = frozenset({str, int})


def _plain_items(attrs: dict[Any, Any]) -> bool:
    """Whether every key is a non-empty ``str`` and every value a ``str`` or an ``int``."""
    return all(type(k) is str and k for k in attrs) and _STR_INT.issuperset(
        map(type, attrs.values())
    )


def request_attributes_from(
    head: Head, scope: dict[str, Any], plain: dict[bytes, Any], mode: semconv.Mode
) -> dict[str, Any]:
    """:func:`request_attributes` of a request whose head is ``head`` and whose headers are
    ``plain``: the head's copy plus the per-request path, query, URL, user agent and client."""
    return request_attributes_plain(head, scope, plain, mode)[0]


def request_attributes_plain(
    head: Head, scope: dict[str, Any], plain: dict[bytes, Any], mode: semconv.Mode
) -> tuple[dict[str, Any], bool]:
    """:func:`request_attributes_from`, and whether every value is a ``str`` or an ``int``
    (``fast_span.start_span(plain=True)``): the head's values were checked once, the
    per-request ones (path, query, user agent, client address) are checked here; the URL and
    the client port are a ``str`` and an ``int`` (or absent) by construction."""
    old, new = mode.old, mode.new
    get = scope.get
    attrs = head.attrs.copy()
    path = get("path")
    query = get("query_string")
    if query and isinstance(query, bytes):
        query = decode(query)
    client = get("client")
    str_int = (
        head.plain
        and (not path or type(path) in _STR_INT)
        and (not query or type(query) in _STR_INT)
        and (client is None or not client[0] or type(client[0]) in _STR_INT)
    )
    if path:
        if old:
            attrs["http.target"] = path
        if new:
            attrs["url.path"] = path
            if query:
                attrs["url.query"] = query
    if old:
        url = head.url_prefix + get("path", "")
        if query:
            url += "?" + urllib.parse.unquote(query)
        attrs["http.url"] = semconv.redact(url)
    agent = plain.get(b"user-agent")
    if agent is not None:
        agent = decode(agent)  # a str, or the header's own str subclass
        str_int = str_int and type(agent) is str
    _client_attrs(attrs, agent, client, old, new)
    return attrs, str_int


def _client_attrs(
    attrs: dict[str, Any], agent: str | None, client: Any, old: bool, new: bool
) -> None:
    """The user-agent and client address/port attributes (of both header paths), in the order
    contrib adds them: ``agent`` is the User-Agent header's value, ``client`` the scope's."""
    if agent:
        semconv.set_user_agent(attrs, agent, old, new)
    if client is not None:
        if client[0]:
            if old:
                attrs["net.peer.ip"] = client[0]
            if new:
                attrs["client.address"] = client[0]
        peer_port = client[1]
        if type(peer_port) is not int:
            peer_port = semconv.as_int(peer_port)
        if peer_port:
            if old:
                attrs["net.peer.port"] = peer_port
            if new:
                attrs["client.port"] = peer_port


# The active-requests keys in the order request_attributes adds them, per (old, new) mode.
ACTIVE_ORDER = semconv.in_order(
    ("http.scheme", "url.scheme", "http.host", "http.flavor")
    + ("http.method", "http.request.method", "http.server_name"),
    semconv.ACTIVE_OLD,
    semconv.ACTIVE_NEW,
)


def default_span_details(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``METHOD /path`` (``HTTP`` for unknown methods); the path alone for websockets."""
    path = scope.get("path", "").strip()
    method = semconv.sanitize_method(scope.get("method", "").strip())
    if method == "_OTHER":
        method = "HTTP"
    if method and path:
        return f"{method} {path}", {}
    if path:
        return path, {}
    return method, {}


def route_target(scope: dict[str, Any]) -> str | None:
    """``root_path + route.path_format`` once the router has matched (FastAPI sets it)."""
    fmt = getattr(scope.get("route"), "path_format", None)
    if not fmt:
        return None
    root = scope.get("root_path", "")
    return root + fmt if root else f"{fmt}"


_STATUSES: dict[int, tuple[int, str]] = {}  # an int status -> status_code_of(it), bounded
_MAX_STATUSES = 256
_UNSET: Any = object()  # no status sent yet
_MANY: Any = object()  # more than one status sent: the metrics take the general path


def _status_of(status: Any) -> tuple[int, str]:
    """:func:`semconv.status_code_of` an ASGI status, remembered for the usual ints."""
    if type(status) is int:
        found = _STATUSES.get(status)
        if found is None:
            found = semconv.status_code_of(status)
            if len(_STATUSES) < _MAX_STATUSES:
                _STATUSES[status] = found
        return found
    return semconv.status_code_of(status)


def enabled_in(current: context.Context) -> bool:
    """contrib's ``is_http_instrumentation_enabled`` read from ``current`` (one lookup of the
    current context instead of three)."""
    return not (
        current.get(_SUPPRESS_INSTRUMENTATION_KEY)
        or current.get(_SUPPRESS_INSTRUMENTATION_KEY_PLAIN)
        or current.get(_SUPPRESS_HTTP_INSTRUMENTATION_KEY)
    )


class Exchange:
    """One request's state, and the ``send`` (and ``receive``) the app is given: one object per
    request instead of a closure with a cell per variable it reads."""

    __slots__ = (
        "attrs",
        "ctx",
        "extra",
        "head",
        "headers",
        "http",
        "active",
        "cell",
        "middleware",
        "plain",
        "receive_from",
        "response_pattern",
        "response_size",
        "scope",
        "send_to",
        "span",
        "status",
        "trailers",
    )

    attrs: dict[str, Any]  # the span's start attributes, then the metrics' (status added)
    ctx: context.Context  # the attached context (holds the span)
    extra: dict[str, Any]  # span_details' extra attributes (shared: never changed)
    head: Head | None  # None: the general path (headers decoded by header_map)
    headers: Headers | None  # the decoded headers, when the general path needed them
    http: bool  # False for a websocket
    active: semconv.ActiveKey
    cell: Cell | None  # the head's active count, when the head is remembered
    middleware: OpenTelemetryASGIMiddleware
    plain: dict[bytes, Any] | None  # plain_headers(scope["headers"])
    receive_from: Any
    response_pattern: Any  # the response header-capture pattern for a SERVER span, or None
    scope: dict[str, Any]
    send_to: Any
    span: Any

    def __init__(self) -> None:
        self.response_size: int | None = None
        self.status: Any = _UNSET
        self.trailers = False

    async def send(self, message: dict[str, Any]) -> None:
        span = self.span
        kind = None
        try:
            kind = message.get("type")
            status = None
            if kind == "http.response.start":
                status = message.get("status")
                self.trailers = bool(message.get("trailers", False))
            elif kind == "websocket.send":
                status = 200
            hook = self.middleware.client_response_hook
            if hook is not None:
                try:
                    hook(span, self.scope, message)
                except Exception as exc:  # noqa: BLE001 - contrib's rule for ASGI hooks
                    span.record_exception(exc)
            size = None
            if "headers" in message:
                raw = message["headers"]
                pattern = self.response_pattern
                if pattern is not None:
                    got = header_map(raw) if raw else {}
                    capture = self.middleware.telemetry.headers
                    custom = capture.attributes(pattern, RESP_PREFIX, got.items())
                    if custom:
                        span.set_attributes(custom)
                    length = got.get("content-length")
                    size = semconv.as_int(length[0]) if length else None
                elif raw:
                    size = content_length(raw)
            if status:
                code, text = _status_of(status)
                semconv.set_status(span, self.attrs, code, text, self.middleware.telemetry.mode)
                self.status = status if self.status is _UNSET else _MANY
            propagator = get_global_response_propagator()
            if propagator:
                propagator.inject(
                    message,
                    context=trace.set_span_in_context(span, context.Context()),
                    setter=_header_appender,
                )
            if size is not None:
                self.response_size = size
        except Exception as exc:  # noqa: BLE001
            fault("asgi.send", exc)
        await self.send_to(message)
        if self.trailers:
            if kind == "http.response.trailers" and not message.get("more_trailers", False):
                span.end()
        elif kind == "http.response.body" and not message.get("more_body", False):
            span.end()

    async def receive(self) -> Any:
        """``receive`` with the ``client_request_hook`` seeing every message."""
        message = await self.receive_from()
        hook = self.middleware.client_request_hook
        if hook is not None:
            try:
                hook(self.span, self.scope, message)
            except Exception as exc:  # noqa: BLE001 - contrib's rule for ASGI hooks
                self.span.record_exception(exc)
        return message


class OpenTelemetryASGIMiddleware:
    """Traces any ASGI app: ``app = OpenTelemetryASGIMiddleware(app)``.

    Same arguments as contrib's ASGI ``OpenTelemetryMiddleware``. ``client_request_hook`` and
    ``client_response_hook`` receive the server span (there are no per-message spans);
    ``exclude_spans`` is accepted and has nothing left to exclude. A hook's exception is
    recorded on the span, never raised into the app (contrib's rule).
    """

    def __init__(
        self,
        app: Callable[..., Any],
        excluded_urls: ExcludeList | str | None = None,
        default_span_details: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]] | None = None,
        server_request_hook: Callable[..., Any] | None = None,
        client_request_hook: Callable[..., Any] | None = None,
        client_response_hook: Callable[..., Any] | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        http_capture_headers_server_request: list[str] | None = None,
        http_capture_headers_server_response: list[str] | None = None,
        http_capture_headers_sanitize_fields: list[str] | None = None,
        exclude_spans: list[str] | None = None,
        *,
        telemetry: ServerTelemetry | None = None,
    ) -> None:
        self.app = app
        self.telemetry = telemetry or ServerTelemetry(
            "opentelemetry.instrumentation.asgi",
            "asgi",
            tracer_provider,
            meter_provider,
            headers=semconv.HeaderCapture(
                http_capture_headers_server_request,
                http_capture_headers_server_response,
                http_capture_headers_sanitize_fields,
            ),
        )
        t = self.telemetry
        t.ensure_size_histograms()
        if isinstance(excluded_urls, str):
            excluded_urls = parse_excluded_urls(excluded_urls)
        self.excluded = excluded_urls if excluded_urls and excluded_urls._excluded_urls else None
        self.span_details = default_span_details or globals()["default_span_details"]
        self.server_request_hook = server_request_hook
        self.client_request_hook = client_request_hook
        self.client_response_hook = client_response_hook
        self.heads: dict[tuple[Any, ...], Head] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope.get("type")
        if kind != "http" and kind != "websocket":
            return await self.app(scope, receive, send)
        current = fast_context.get_current()
        if current and not enabled_in(current):
            return await self.app(scope, receive, send)
        try:
            start = default_timer()
            ex = self._start(scope, kind == "http", current)
        except Exception as exc:  # noqa: BLE001 - never the app's problem
            fault("asgi.start", exc)
            return await self.app(scope, receive, send)
        if ex is None:  # an excluded URL
            return await self.app(scope, receive, send)
        span = ex.span
        token = fast_context.attach(ex.ctx)
        try:
            hook = self.server_request_hook
            if hook is not None:
                try:
                    hook(span, scope)
                except Exception as exc:  # noqa: BLE001 - contrib's rule for ASGI hooks
                    span.record_exception(exc)
            if self.client_request_hook is not None:
                ex.receive_from = receive
                receive = ex.receive
            ex.send_to = send
            await self.app(scope, receive, ex.send)
        except Exception as exc:
            semconv.record_exception(span, exc)
            raise
        finally:
            if ex.http:
                try:
                    self._record(ex, start)
                except Exception as exc:  # noqa: BLE001
                    fault("asgi.metrics", exc)
            fast_context.detach(token)
            if span.is_recording():
                span.end()

    def _start(
        self, scope: dict[str, Any], http: bool, current: context.Context
    ) -> Exchange | None:
        """The request's attributes, span and active count (None for an excluded URL)."""
        t = self.telemetry
        mode = t.mode
        raw = scope.get("headers")
        plain = plain_headers(raw)
        head = None
        headers: Headers | None = None
        if plain is not None:
            head = head_of(self.heads, scope, plain.get(b"host"), mode)
        if head is None:
            headers = header_map(raw)
        if self.excluded is not None:
            if head is not None:
                url = head.url_prefix + scope.get("path", "")
            else:
                assert headers is not None
                url = host_port_url(scope, headers)[2]
            if self.excluded.url_disabled(url):
                return None
        name, extra = self.span_details(scope)
        if head is not None:
            assert plain is not None
            attrs, str_int = request_attributes_plain(head, scope, plain, mode)
            active = head.active
            incoming = b"traceparent" in plain or b"baggage" in plain
            carrier: Any = plain
            getter: Getter[Any] = plain_header_getter
        else:
            assert headers is not None
            attrs = request_attributes(scope, headers, mode)
            str_int = False  # fast_span checks them itself
            active = semconv.active_attrs(attrs, mode, ACTIVE_ORDER) if http else ()
            incoming = "traceparent" in headers or "baggage" in headers
            carrier, getter = headers, header_getter
        if extra:
            attrs.update(extra)
            str_int = str_int and _plain_items(extra)
        span, ctx = start_server_span(
            t.tracer,
            name,
            carrier,
            getter,
            attrs,
            current=current,
            incoming=incoming,
            plain=str_int,
        )
        ex = Exchange()
        ex.span, ex.ctx, ex.attrs, ex.extra, ex.head = span, ctx, attrs, extra, head
        ex.plain, ex.headers, ex.scope, ex.middleware, ex.http = plain, headers, scope, self, http
        ex.active = active
        ex.cell = None
        if http:
            if head is not None:
                cell = head.cell
                if cell is None:
                    cell = head.cell = t.active.cell(active)
                cell.append(None)  # active requests +1 (ActiveRequests' cell)
                ex.cell = cell
            else:
                t.active.add(1, active)
        server = span.is_recording() and semconv.is_server(span)
        ex.response_pattern = t.headers.response if server else None
        if server and t.headers.request is not None:
            if headers is None:
                headers = header_map(raw)
            custom = t.headers.attributes(t.headers.request, REQ_PREFIX, headers.items())
            if custom:
                span.set_attributes(custom)
        return ex

    def _record(self, ex: Exchange, start: float) -> None:
        """Duration and body sizes; the exemplar's context is the attached one."""
        t = self.telemetry
        seconds = default_timer() - start
        target = route_target(ex.scope)
        old_attrs, new_attrs, known = self._metric_attrs(ex, target)
        ctx = ex.ctx
        if known:  # memoised dicts, never changed again
            t.record_known(seconds, old_attrs, new_attrs, ctx)
        else:
            t.record_picked(seconds, old_attrs, new_attrs, ctx)
        if ex.cell is not None:
            ex.cell.pop()  # active requests -1
        else:
            t.active.add(-1, ex.active)
        if ex.plain is not None:
            length = ex.plain.get(b"content-length")
            size = None if length is None else semconv.as_int(decode(length))
        else:
            assert ex.headers is not None
            found = ex.headers.get("content-length")
            size = semconv.as_int(found[0]) if found else None
        response_size = ex.response_size
        if response_size:  # contrib skips a zero length
            if t.response_size_old is not None:
                _record(t.response_size_old, response_size, old_attrs, ctx, known)
            if t.response_size_new is not None:
                _record(t.response_size_new, response_size, new_attrs, ctx, known)
        if size is not None:
            if t.request_size_old is not None:
                _record(t.request_size_old, size, old_attrs, ctx, known)
            if t.request_size_new is not None:
                _record(t.request_size_new, size, new_attrs, ctx, known)

    def _metric_attrs(
        self, ex: Exchange, target: str | None
    ) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """(old, new) duration and size attributes: ``semconv.pick`` of the request's attributes
        (plus ``http.target`` for the old ones), remembered per head for the usual requests,
        whose picked attributes depend on nothing but the head, status, target and route; and
        whether they are such remembered dicts (which nothing changes any more)."""
        status, extra, head = ex.status, ex.extra, ex.head
        key = None
        if (
            head is not None
            and (status is _UNSET or type(status) is int)
            and (not extra or (len(extra) == 1 and "http.route" in extra))
        ):
            key = (status, target, extra.get("http.route") if extra else None)
            found = head.metrics.get(key)
            if found is not None:
                return found
        attrs = ex.attrs
        old_attrs = semconv.pick(attrs, semconv.DURATION_OLD)
        if target:
            old_attrs["http.target"] = target
        new_attrs = semconv.pick(attrs, semconv.DURATION_NEW)
        if head is not None and key is not None and len(head.metrics) < _MAX_METRIC_SETS:
            found = head.metrics[key] = (old_attrs, new_attrs, True)
            return found
        return old_attrs, new_attrs, False


def _record(histogram: Any, amount: int, attrs: dict[str, Any], ctx: Any, known: bool) -> None:
    """``histogram.record``; ``record_known`` for memoised attributes (``known``)."""
    if known and type(histogram) is FastHistogram:
        histogram.record_known(amount, attrs, ctx)
    else:
        histogram.record(amount, attrs, context=ctx)
