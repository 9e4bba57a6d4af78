"""The OTLP receiver of ``hyperdx local``, also the project's test receiver.

One :class:`Receiver` serves OTLP/HTTP (protobuf and JSON; aiohttp on a private event-loop
thread) and OTLP/gRPC (grpcio), checks the ingestion key like ClickStack's collector, maps
each request to ClickStack rows (:mod:`hyperdx.local.rows`) and writes them to a
:class:`~hyperdx.local.sinks.Sink` before answering, so a 200 means stored (or, for the chDB
sink's log and span blocks, journaled on disk and stored next). Every request,
rejected ones included, is kept in :attr:`Receiver.requests` for tests and diagnostics.

Usage::

    with Receiver(MemorySink(), http_port=0, grpc_port=0) as receiver:
        ...  # export to receiver.http_url / receiver.grpc_url
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from hyperdx.local import wire
from hyperdx.local.admission import Admission
from hyperdx.local.loop_thread import serve_in_thread
from hyperdx.local.receiver_grpc import GrpcListener
from hyperdx.local.receiver_http import HttpListener, RouteHandler, make_server
from hyperdx.local.sinks import Sink

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ReceivedRequest", "Receiver", "RouteHandler"]

DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024
_WORKERS = 32
_SECRET_HEADERS = ("authorization", "cookie", "x-api-key", "proxy-authorization")


@dataclass(repr=False)
class ReceivedRequest:
    """One request as the receiver saw it.

    ``protocol``: ``http/protobuf`` (also for HTTP requests with another or no media type),
    ``http/json`` or ``grpc``. ``signal``: ``traces``/``logs``/``metrics``, ``""`` for other
    paths. ``headers``: lower-case names, first value (gRPC: the invocation metadata).
    ``content_encoding``: the Content-Encoding; for gRPC the message's compression as
    recognised (``gzip``, ``deflate`` or ``""``).
    ``status``: the HTTP status sent; for gRPC the HTTP equivalent of the gRPC code (200 OK,
    400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 413 RESOURCE_EXHAUSTED (too large once
    inflated), 500 INTERNAL, 503 UNAVAILABLE). ``items``:
    spans, log records or data points stored (0 when rejected). ``message``: why it was
    rejected (a wrong key is never repeated here).
    """

    protocol: str
    signal: str
    path: str
    headers: dict[str, str]
    content_encoding: str
    status: int
    items: int
    message: str = field(default="")

    def __repr__(self) -> str:
        shown = {
            name: ("<redacted>" if name in _SECRET_HEADERS else value)
            for name, value in self.headers.items()
        }
        return (
            f"ReceivedRequest(protocol={self.protocol!r}, signal={self.signal!r}, "
            f"path={self.path!r}, status={self.status}, items={self.items}, "
            f"content_encoding={self.content_encoding!r}, message={self.message!r}, "
            f"headers={shown!r})"
        )


class Receiver:
    """OTLP/HTTP + OTLP/gRPC receiver writing ClickStack rows into a sink.

    ``api_keys=None`` disables authentication (tests); otherwise the first ``authorization``
    value must equal one key exactly (no ``Bearer``). Port 0 binds an ephemeral port; None
    turns that listener off. ``max_body_bytes`` caps every body, raw and decompressed
    (413 beyond it); ``keep_requests`` bounds :attr:`requests` (the oldest are dropped
    first). ``admission`` decides when to answer 503 / UNAVAILABLE "retry later" instead of
    queueing (see :mod:`hyperdx.local.admission`).
    """

    def __init__(
        self,
        sink: Sink,
        *,
        host: str = "127.0.0.1",
        http_port: int | None = 4318,
        grpc_port: int | None = 4317,
        api_keys: Sequence[str] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        keep_requests: int = 10_000,
        admission: Admission | None = None,
    ) -> None:
        if api_keys is not None and not all(isinstance(k, str) and k for k in api_keys):
            raise ValueError("api_keys: every key must be a non-empty string")
        if max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes!r}")
        self.sink = sink
        self.host = host
        self.http_port: int = http_port or 0
        self.grpc_port: int | None = grpc_port
        # Oldest entries are dropped beyond ``keep_requests`` so a long-running server stays
        # bounded; ``items_received`` keeps the totals per signal.
        self.requests: list[ReceivedRequest] = []
        self.items_received: dict[str, int] = {"traces": 0, "logs": 0, "metrics": 0}
        self._keep_requests = max(1, keep_requests)
        self.sink_errors = wire.SinkErrors()
        self.admission = admission or Admission()
        self._want_http = http_port is not None
        self._want_grpc = grpc_port is not None
        self._lock = threading.Lock()
        # Workers mostly wait for the store's writer (GIL released); admission bounds how many
        # requests are in flight, so this only needs to exceed the usual exporter concurrency.
        self._executor = ThreadPoolExecutor(
            max_workers=_WORKERS, thread_name_prefix="hyperdx-receiver"
        )
        self._http = HttpListener(
            sink=sink,
            api_keys=api_keys,
            max_body_bytes=max_body_bytes,
            executor=self._executor,
            record=self._record,
            errors=self.sink_errors,
            admission=self.admission,
            workers=_WORKERS,
        )
        self._grpc = (
            GrpcListener(
                sink=sink,
                api_keys=api_keys,
                max_body_bytes=max_body_bytes,
                record=self._record,
                errors=self.sink_errors,
                admission=self.admission,
            )
            if self._want_grpc
            else None
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.ServerRunner | None = None
        self._started = False

    # -- public API --------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path); "" when the HTTP listener is off."""
        return f"http://{self._url_host}:{self.http_port}" if self._want_http else ""

    @property
    def grpc_url(self) -> str:
        """``http://127.0.0.1:PORT`` for an insecure gRPC exporter; "" when off."""
        return f"http://{self._url_host}:{self.grpc_port}" if self._want_grpc else ""

    def add_route(
        self, method: str, path: str, handler: RouteHandler, *, auth: bool = True
    ) -> None:
        """Serve ``method path`` on the HTTP listener with ``handler``.

        ``handler`` is ``async def handler(request: aiohttp.web.BaseRequest) ->
        aiohttp.web.StreamResponse``; it runs on the receiver's event loop, so blocking work
        belongs in ``asyncio.get_running_loop().run_in_executor(...)``. With ``auth=True`` (the
        default) the ingestion key is required as for OTLP paths. Routes may be added before
        or after :meth:`start`.
        """
        self._http.add_route(method, path, handler, auth=auth)

    def start(self) -> Receiver:
        if self._started:
            raise RuntimeError("Receiver.start() called twice")
        self._started = True
        try:
            if self._grpc is not None:
                self.grpc_port = self._grpc.bind(self.host, self.grpc_port or 0)
                self._grpc.start()
            if self._want_http:
                self._start_http()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both listeners (in-flight requests get a short grace period). Idempotent."""
        if self._grpc is not None:
            self._grpc.stop()
        loop, thread, runner = self._loop, self._thread, self._runner
        self._loop = self._thread = self._runner = None
        if loop is not None and thread is not None:
            if runner is not None:
                future = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)
                future.result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Receiver:
        return self if self._started else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def requests_for(self, signal: str) -> list[ReceivedRequest]:
        """Snapshot of the requests received for one signal."""
        with self._lock:
            return [r for r in self.requests if r.signal == signal]

    # -- internals ---------------------------------------------------------------------------

    @property
    def _url_host(self) -> str:
        host = self.host or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return f"[{host}]" if ":" in host else host

    def _record(self, **fields: Any) -> None:
        request = ReceivedRequest(**fields)
        with self._lock:
            self.requests.append(request)
            if len(self.requests) > 2 * self._keep_requests:  # trim in batches: amortised O(1)
                del self.requests[: len(self.requests) - self._keep_requests]
            if request.status == 200 and request.signal:
                self.items_received[request.signal] += request.items

    def _start_http(self) -> None:
        loop = asyncio.new_event_loop()

        async def setup() -> None:
            server = make_server(self._http)
            runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=3.0)
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.http_port, reuse_port=False)
            try:
                await site.start()
            except OSError:
                await runner.cleanup()
                raise
            self._runner = runner
            address = runner.addresses[0]
            self.http_port = int(address[1])

        try:
            thread = serve_in_thread(loop, setup, "hyperdx-receiver-http")
        except BaseException as error:
            raise OSError(
                f"cannot listen for OTLP/HTTP on {self.host}:{self.http_port}: {error}"
            ) from error
        self._loop, self._thread = loop, thread
