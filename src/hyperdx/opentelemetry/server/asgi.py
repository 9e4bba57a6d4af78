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
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.propagators.textmap import Getter
from opentelemetry.util.http import ExcludeList, parse_excluded_urls

from hyperdx.opentelemetry.server import semconv
from hyperdx.opentelemetry.server.faults import fault
from hyperdx.opentelemetry.server.telemetry import ServerTelemetry
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
    return not context.get_current() or is_http_instrumentation_enabled()


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
    if agent:
        value = agent[0]
        if value:
            if old:
                attrs["http.user_agent"] = value
            if new:
                attrs["user_agent.original"] = value
            synthetic = semconv.synthetic_type(value)
            if synthetic:
                attrs["user_agent.synthetic.type"] = synthetic
    client = get("client")
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
    return attrs


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
    return f"{scope.get('root_path', '')}{fmt}" if fmt else None


class OpenTelemetryASGIMiddleware:
    """Traces any ASGI app: ``app = OpenTelemetryASGIMiddleware(app)``.

    Same arguments as contrib's ASGI ``OpenTelemetryMiddleware``. ``client_request_hook`` and
    ``client_response_hook`` receive the server span (there are no per-message spans);
    ``exclude_spans`` is accepted and has nothing left to exclude.
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
        self.server_request_hook = _failsafe(server_request_hook)
        self.client_request_hook = _failsafe(client_request_hook)
        self.client_response_hook = _failsafe(client_response_hook)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope.get("type")
        if (kind != "http" and kind != "websocket") or not instrumentation_enabled():
            return await self.app(scope, receive, send)
        t = self.telemetry
        mode = t.mode
        try:
            start = default_timer()
            headers = header_map(scope.get("headers"))
            if self.excluded is not None and self.excluded.url_disabled(
                host_port_url(scope, headers)[2]
            ):
                return await self.app(scope, receive, send)
            name, extra = self.span_details(scope)
            attrs = request_attributes(scope, headers, mode)
            if extra:
                attrs.update(extra)
            span, ctx = start_server_span(t.tracer, name, headers, header_getter, attrs)
            http = kind == "http"
            active: semconv.ActiveKey = ()
            if http:
                active = semconv.active_attrs(attrs, mode, ACTIVE_ORDER)
                t.active.add(1, active)
            server = span.is_recording() and semconv.is_server(span)
            if server and t.headers.request is not None:
                custom = t.headers.attributes(t.headers.request, REQ_PREFIX, headers.items())
                if custom:
                    span.set_attributes(custom)
        except Exception as exc:  # noqa: BLE001 - never the app's problem
            fault("asgi.start", exc)
            return await self.app(scope, receive, send)
        token = context.attach(ctx)
        response_size: list[int] = []
        try:
            if self.server_request_hook is not None:
                self.server_request_hook(span, scope)
            app_receive = receive
            request_hook = self.client_request_hook
            if request_hook is not None:

                async def app_receive() -> Any:
                    message = await receive()
                    request_hook(span, scope, message)
                    return message

            response_hook = self.client_response_hook
            headers_pattern = t.headers.response if server else None
            trailers = False

            async def app_send(message: dict[str, Any]) -> None:
                nonlocal trailers
                try:
                    kind = message.get("type")
                    status = None
                    if kind == "http.response.start":
                        status = message.get("status")
                        trailers = bool(message.get("trailers", False))
                    elif kind == "websocket.send":
                        status = 200
                    if response_hook is not None:
                        response_hook(span, scope, message)
                    size = None
                    if "headers" in message:
                        raw = message["headers"]
                        if headers_pattern is not None:
                            got = header_map(raw) if raw else {}
                            custom = t.headers.attributes(headers_pattern, RESP_PREFIX, got.items())
                            if custom:
                                span.set_attributes(custom)
                            length = got.get("content-length")
                            size = semconv.as_int(length[0]) if length else None
                        elif raw:
                            size = content_length(raw)
                    if status:
                        code, text = semconv.status_code_of(status)
                        semconv.set_status(span, attrs, code, text, mode)
                    propagator = get_global_response_propagator()
                    if propagator:
                        propagator.inject(
                            message,
                            context=trace.set_span_in_context(span, context.Context()),
                            setter=_header_appender,
                        )
                    if size is not None:
                        response_size[:] = [size]
                except Exception as exc:  # noqa: BLE001
                    fault("asgi.send", exc)
                await send(message)
                if (
                    not trailers
                    and kind == "http.response.body"
                    and not message.get("more_body", False)
                ) or (
                    trailers
                    and kind == "http.response.trailers"
                    and not message.get("more_trailers", False)
                ):
                    span.end()

            await self.app(scope, app_receive, app_send)
        except Exception as exc:
            semconv.record_exception(span, exc)
            raise
        finally:
            if http:
                try:
                    self._record(scope, headers, attrs, active, start, span, ctx, response_size)
                except Exception as exc:  # noqa: BLE001
                    fault("asgi.metrics", exc)
            context.detach(token)
            if span.is_recording():
                span.end()

    def _record(
        self,
        scope: dict[str, Any],
        headers: Headers,
        attrs: dict[str, Any],
        active: semconv.ActiveKey,
        start: float,
        span: trace.Span,
        ctx: context.Context,
        response_size: list[int],
    ) -> None:
        """Duration and body sizes; ``ctx`` is the attached context (the exemplar's span)."""
        t = self.telemetry
        target = route_target(scope)
        old_extra = {"http.target": target} if target else None
        t.record(default_timer() - start, attrs, span, old_extra, span_context=ctx)
        t.active.add(-1, active)
        length = headers.get("content-length")
        size = semconv.as_int(length[0]) if length else None
        if size is None and not (response_size and response_size[0]):
            return
        old_attrs: dict[str, Any] = {}
        if t.response_size_old is not None:  # the old histograms exist in old and dup mode
            old_attrs = semconv.pick(attrs, semconv.DURATION_OLD)
            if old_extra:
                old_attrs.update(old_extra)
        new_attrs: dict[str, Any] = {}
        if t.response_size_new is not None:
            new_attrs = semconv.pick(attrs, semconv.DURATION_NEW)
        if response_size and response_size[0]:  # contrib skips a zero length
            if t.response_size_old is not None:
                t.response_size_old.record(response_size[0], old_attrs, context=ctx)
            if t.response_size_new is not None:
                t.response_size_new.record(response_size[0], new_attrs, context=ctx)
        if size is not None:
            if t.request_size_old is not None:
                t.request_size_old.record(size, old_attrs, context=ctx)
            if t.request_size_new is not None:
                t.request_size_new.record(size, new_attrs, context=ctx)


def _failsafe(hook: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """contrib's rule for ASGI hooks: an exception in a hook is recorded on the span, not raised."""
    if hook is None:
        return None

    def safe(span: trace.Span, *args: Any) -> None:
        try:
            hook(span, *args)
        except Exception as exc:  # noqa: BLE001
            span.record_exception(exc)

    return safe
