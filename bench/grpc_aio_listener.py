"""A cost probe, not product code: the OTLP/gRPC listener on grpcio's asyncio server.

The server runs on its own event-loop thread; each call's decode, mapping and store go to a
thread pool as in the thread-per-call listener. Authentication and RetryInfo are left out
(they cost the same either way). Measured against the real listener with
``LAYER_COST_LISTENER=grpc_aio_listener:AioGrpcListener python bench/grpc_layer_cost.py``
(BENCHMARKS.md, eighth round: no cheaper, so not adopted).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc

from hyperdx.local import receiver_grpc, wire
from hyperdx.local.admission import Admission, Overloaded
from hyperdx.local.loop_thread import serve_in_thread
from hyperdx.local.sinks import Sink


class AioGrpcListener:
    """Same constructor and methods as :class:`hyperdx.local.receiver_grpc.GrpcListener`."""

    def __init__(
        self,
        *,
        sink: Sink,
        api_keys: Sequence[str] | None,
        max_body_bytes: int,
        record: Callable[..., None],
        errors: wire.SinkErrors,
        admission: Admission,
        workers: int = 16,
        max_concurrent: int = 48,
    ) -> None:
        self._sink, self._admission, self._record, self._errors = sink, admission, record, errors
        self._limit = max_body_bytes
        self._pool = futures.ThreadPoolExecutor(workers, thread_name_prefix="hyperdx-grpc")
        self._loop = asyncio.new_event_loop()
        self._options = [("grpc.max_receive_message_length", max_body_bytes)]
        self._options += [("grpc.so_reuseport", 0), ("grpc.per_message_decompression", 0)]
        self._max_concurrent = max_concurrent
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def bind(self, host: str, port: int) -> int:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        bound: list[int] = []

        async def setup() -> None:
            self._server = grpc.aio.server(
                options=self._options, maximum_concurrent_rpcs=self._max_concurrent
            )
            signals = {signal.name: signal for signal in wire.SIGNALS.values()}
            for name, service in receiver_grpc._SERVICES.items():
                handler = grpc.unary_unary_rpc_method_handler(
                    self._exporter(signals[name], service)
                )
                self._server.add_generic_rpc_handlers(
                    (grpc.method_handlers_generic_handler(service, {"Export": handler}),)
                )
            bound.append(self._server.add_insecure_port(address))
            await self._server.start()

        self._thread = serve_in_thread(self._loop, setup, "grpc-aio-loop")
        return bound[0]

    def start(self) -> None:
        """Started by :meth:`bind` already (the server needs its loop to bind)."""

    def stop(self, grace: float = 1.0) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop).result(grace + 2)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._pool.shutdown()

    def _ingest(self, signal: wire.Signal, raw: bytes, encoding: str, since: float) -> int:
        kind = wire.request_type(signal, self._sink, wire.PROTOBUF)

        def decode() -> Any:
            return wire.decode(wire.decompress(raw, encoding, self._limit), wire.PROTOBUF, kind)

        return wire.ingest(self._admission, self._sink, signal, decode, self._errors, since)

    def _exporter(self, signal: wire.Signal, service: str) -> Callable[..., Any]:
        path = f"/{service}/Export"

        async def export(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            metadata: dict[str, str] = {}
            for key, value in context.invocation_metadata() or ():
                if isinstance(value, str):
                    metadata.setdefault(key.lower(), value)
            encoding = receiver_grpc.message_encoding(raw)
            since = time.monotonic()
            status, items, text = 200, 0, ""
            try:
                self._admission.reserve_bytes(len(raw))
            except Overloaded as refusal:
                status, text = 503, f"overloaded, retry later: {refusal.reason}"
            else:
                try:
                    items = await self._loop.run_in_executor(
                        self._pool, self._ingest, signal, raw, encoding, since
                    )
                except wire.WireError as error:
                    status, text = error.status, error.message
                finally:
                    self._admission.release_bytes(len(raw))
            self._record(
                protocol="grpc",
                signal=signal.name,
                path=path,
                headers=metadata,
                content_encoding=encoding,
                status=status,
                items=items,
                message=text,
            )
            if status != 200:
                code = receiver_grpc._GRPC_FOR_HTTP.get(status, grpc.StatusCode.INTERNAL)
                await context.abort(code, text)
            return receiver_grpc._EMPTY_RESPONSE

        return export
