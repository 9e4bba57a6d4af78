"""OTLP/HTTP listener on aiohttp's low-level server.

The low-level server hands every request to one coroutine, so the check order is ours and
matches the collector's handler chain (REFERENCE.md 1.3): CORS preflight, auth (401),
Content-Encoding (400), path (404), method (405), media type (415), body size (413), queued
bytes (503), decode (400), admission (503), store (200 / 503 / 500). aiohttp reads chunked
bodies; its own request decompression is off so that the 20 MiB cap also bounds the
decompressed size (a small gzip bomb is refused without inflating it all). Decoding, mapping
and the blocking ``Sink.write`` run in a thread pool so the event loop keeps serving. Every
503 carries ``Retry-After`` (whole seconds), which the OTLP exporters honour.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from hyperdx.local import wire
from hyperdx.local.admission import Admission, Overloaded
from hyperdx.local.sinks import Sink

__all__ = ["HttpListener", "RouteHandler"]

# A custom route: ``async def handler(request: aiohttp.web.BaseRequest) -> web.StreamResponse``.
RouteHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
Record = Callable[..., None]

_NOT_FOUND = b"404 page not found\n"
_NOT_ALLOWED = b"405 method not allowed, supported: [POST]"
_UNSUPPORTED_MEDIA = (
    b"415 unsupported media type, supported: [application/json, application/x-protobuf]"
)


@dataclass(frozen=True)
class Route:
    handler: RouteHandler
    auth: bool


class HttpListener:
    """Answers OTLP/HTTP requests and any routes added with :meth:`add_route`."""

    def __init__(
        self,
        *,
        sink: Sink,
        api_keys: Sequence[str] | None,
        max_body_bytes: int,
        executor: Executor,
        record: Record,
        errors: wire.SinkErrors,
        admission: Admission,
        workers: int,
    ) -> None:
        self._sink = sink
        self._admission = admission
        self._workers = workers
        self._in_pool = 0  # requests handed to the executor and not back (event loop only)
        self._keys = None if api_keys is None else list(api_keys)
        self._limit = max_body_bytes
        self._executor = executor
        self._record = record
        self._errors = errors
        self._routes: dict[tuple[str, str], Route] = {}

    def add_route(self, method: str, path: str, handler: RouteHandler, *, auth: bool) -> None:
        self._routes[(method.upper(), path)] = Route(handler, auth)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        headers = _first_values(request)
        path = request.path
        signal = wire.SIGNALS.get(path)
        signal_name = signal.name if signal is not None else ""
        encoding = headers.get("content-encoding", "")
        media = wire.media_type(headers.get("content-type"))

        def reply(response: web.StreamResponse, message: str = "", items: int = 0) -> None:
            self._record(
                protocol="http/json" if media == wire.JSON else "http/protobuf",
                signal=signal_name,
                path=path,
                headers=headers,
                content_encoding=encoding,
                status=response.status,
                items=items,
                message=message,
            )

        async def fail(response: web.Response, message: str = "") -> web.Response:
            reply(response, message)
            return await _drained(request, self._limit, response)

        if request.method == "OPTIONS" and "access-control-request-method" in headers:
            response = _preflight(headers)
            reply(response, "CORS preflight")
            return response
        route = self._routes.get((request.method, path))
        if self._keys is not None and (route is None or route.auth):
            problem = wire.check_authorization(request.headers.get("authorization"), self._keys)
            if problem is not None:
                # The answer echoes a wrong value (as the collector's does); the record must not.
                recorded = problem if problem == wire.MISSING_AUTH else wire.BAD_AUTH + "<redacted>"
                return await fail(_status(401, problem, media, headers), recorded)
        if route is not None:
            custom = await route.handler(request)
            reply(custom)
            return custom
        try:
            wire.check_encoding(encoding)
        except wire.WireError as error:
            return await fail(_status(400, error.message, media, headers), error.message)
        if signal is None:
            return await fail(_plain(404, _NOT_FOUND, "text/plain; charset=utf-8", headers))
        if request.method != "POST":
            return await fail(_plain(405, _NOT_ALLOWED, "text/plain", headers))
        if media not in (wire.JSON, wire.PROTOBUF):
            return await fail(_plain(415, _UNSUPPORTED_MEDIA, "text/plain", headers))
        if request.content_length is not None and request.content_length > self._limit:
            # too large is final (413), whatever the load: check it before admission
            return await fail(_status(413, wire.TOO_LARGE, media, headers), wire.TOO_LARGE)
        reserved = request.content_length or 0
        try:
            self._admission.reserve_bytes(reserved)
        except Overloaded as refusal:
            message = f"overloaded, retry later: {refusal.reason}"
            return await fail(_unavailable(message, refusal.retry_after, media, headers), message)
        try:
            body = await _read_body(request, self._limit)
            if request.content_length is None:  # chunked: known only now
                self._admission.reserve_bytes(len(body))
                reserved = len(body)
            loop = asyncio.get_running_loop()
            queued = self._in_pool >= self._workers  # it will wait for a worker
            self._in_pool += 1
            try:
                items = await loop.run_in_executor(
                    self._executor,
                    self._ingest,
                    signal,
                    body,
                    encoding,
                    media,
                    time.monotonic(),
                    queued,
                )
            finally:
                self._in_pool -= 1
        except Overloaded as refusal:
            message = f"overloaded, retry later: {refusal.reason}"
            return await fail(_unavailable(message, refusal.retry_after, media, headers), message)
        except wire.WireError as error:
            if error.retry_after is not None:
                response = _unavailable(error.message, error.retry_after, media, headers)
            else:
                response = _status(error.status, error.message, media, headers)
            return await fail(response, error.message)
        except Exception as error:  # a bug in mapping must fail this request, not the server
            self._errors.report(f"{signal_name} request", error)
            message = f"internal error: {type(error).__name__}"
            return await fail(_status(500, message, media, headers), message)
        finally:
            self._admission.release_bytes(reserved)
        ok = web.Response(
            status=200, body=wire.success_body(media), headers={"Content-Type": media}
        )
        reply(ok, items=items)
        return _cors(ok, headers)

    def _ingest(
        self,
        signal: wire.Signal,
        body: bytes,
        encoding: str,
        media: str,
        since: float,
        queued: bool,
    ) -> int:
        def decode() -> Any:
            data = wire.decompress(body, encoding, self._limit)
            # data is freed on return
            return wire.decode(data, media, wire.request_type(signal, self._sink, media))

        return wire.ingest(self._admission, self._sink, signal, decode, self._errors, since, queued)


def _first_values(request: web.BaseRequest) -> dict[str, str]:
    """Header names lower-cased, first value of each (as the collector reads them)."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), value)
    return headers


async def _read_body(request: web.BaseRequest, limit: int) -> bytes:
    """Read the whole body, chunked or not, failing (400) once it exceeds ``limit``.

    A client that sent ``Expect: 100-continue`` (curl does for bodies over 1 KiB) is told to
    go ahead only now, after every header check passed.
    """
    if request.content_length is not None and request.content_length > limit:
        raise wire.WireError(413, wire.TOO_LARGE)
    if _expects_continue(request):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await request.content.readany()
        except (ConnectionError, asyncio.IncompleteReadError, HttpProcessingError) as error:
            # The client went away or broke the framing mid-body: its fault, not ours.
            raise wire.WireError(400, f"failed to read the request body: {error}") from error
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise wire.WireError(413, wire.TOO_LARGE)
        chunks.append(chunk)


async def _drained(request: web.BaseRequest, limit: int, response: web.Response) -> web.Response:
    """Discard a bounded rest of an unread body first, so the client reads our answer instead
    of a reset connection; beyond that bound the connection is simply closed."""
    if _expects_continue(request):
        response.force_close()  # the client waits for our word and never sends the body
        return response
    budget = 2 * limit + (1 << 20)
    try:
        while budget > 0:
            chunk = await request.content.readany()
            if not chunk:
                return response
            budget -= len(chunk)
    except (ConnectionError, asyncio.IncompleteReadError, HttpProcessingError):
        return response
    response.force_close()
    return response


def _expects_continue(request: web.BaseRequest) -> bool:
    return (
        request.version >= (1, 1)
        and request.headers.get("Expect", "").lower() == "100-continue"
        and request.method == "POST"
    )


def _status(status: int, message: str, media: str, headers: dict[str, str]) -> web.Response:
    code, content_type, body = wire.status_response(status, message, media)
    return _cors(
        web.Response(status=code, body=body, headers={"Content-Type": content_type}), headers
    )


def _unavailable(
    message: str, retry_after: int, media: str, headers: dict[str, str]
) -> web.Response:
    """503 with ``Retry-After``: the OTLP spec's retryable answer to "too much right now"."""
    response = _status(503, message, media, headers)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _plain(status: int, body: bytes, content_type: str, headers: dict[str, str]) -> web.Response:
    return _cors(
        web.Response(status=status, body=body, headers={"Content-Type": content_type}), headers
    )


def _cors(response: web.Response, headers: dict[str, str]) -> web.Response:
    """CORS for allowed origins ``*`` with credentials: echo the request's Origin."""
    origin = headers.get("origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
    return response


def _preflight(headers: dict[str, str]) -> web.Response:
    response = web.Response(status=204)
    response.headers["Vary"] = (
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    )
    origin = headers.get("origin")
    method = headers.get("access-control-request-method", "").upper()
    if origin and method in ("GET", "POST", "HEAD"):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = method
        response.headers["Access-Control-Allow-Credentials"] = "true"
        requested = headers.get("access-control-request-headers")
        if requested:
            response.headers["Access-Control-Allow-Headers"] = requested
    return response


def make_server(listener: HttpListener, **kwargs: Any) -> web.Server:
    """aiohttp low-level server: our own dispatch, no request decompression, no access log."""
    return web.Server(listener.handle, auto_decompress=False, access_log=None, **kwargs)
