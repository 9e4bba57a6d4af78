"""Runs the two read interfaces (ClickHouse HTTP and HyperDX's API) on their own event loop.

Separate from the OTLP receiver's loop and executor, so a burst of queries never delays
ingestion; the queries themselves run on the store's read sessions in a small thread pool.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hyperdx.local import clickhouse_http, hyperdx_api
from hyperdx.local.clickhouse_http import QueryEngine
from hyperdx.local.loop_thread import serve_in_thread

DEFAULT_CLICKHOUSE_PORT = 8123
DEFAULT_UI_PORT = 8000


class QueryListeners:
    """``start`` returns once both ports listen (their real numbers in ``*_port``).

    A port left as None means "the default, or any free port if that one is taken" (another
    ClickHouse or HyperDX often owns 8123/8000; the banner prints the port in use and
    ``notes`` says why it moved). A port given explicitly must be free.
    """

    def __init__(
        self,
        engine: QueryEngine,
        key: str,
        *,
        host: str,
        clickhouse_port: int | None,
        ui_port: int | None,
        network: bool,
    ) -> None:
        self.engine = engine
        self.key = key
        self.host = host
        self.clickhouse_port = clickhouse_port
        self.ui_port = ui_port
        self.network = network
        self.notes: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[Any] = []
        self._executor = ThreadPoolExecutor(
            max_workers=engine.limits.sessions + 2, thread_name_prefix="hyperdx-query"
        )

    @property
    def url_host(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"[{host}]" if ":" in host else host

    def start(self) -> QueryListeners:
        from aiohttp import web

        loop = asyncio.new_event_loop()
        loop.set_default_executor(self._executor)

        async def listen(app: web.Application, port: int | None, default: int, flag: str) -> int:
            runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=3.0)
            await runner.setup()
            try:
                try:
                    await web.TCPSite(runner, self.host, default if port is None else port).start()
                except OSError as exc:
                    if port is not None:
                        raise OSError(
                            f"cannot listen on {self.host}:{port} ({flag}): {exc.strerror or exc}"
                        ) from exc
                    await web.TCPSite(runner, self.host, 0).start()
                    self.notes.append(
                        f"port {default} is taken ({exc.strerror or exc}); {flag} "
                        f"{runner.addresses[0][1]} instead (pass {flag} to choose)"
                    )
            except OSError:
                await runner.cleanup()
                raise
            self._runners.append(runner)
            return int(runner.addresses[0][1])

        async def setup() -> None:
            ch_app = clickhouse_http.make_app(self.engine, self.key, network=self.network)
            self.clickhouse_port = await listen(
                ch_app, self.clickhouse_port, DEFAULT_CLICKHOUSE_PORT, "--clickhouse-port"
            )
            ui_app = hyperdx_api.make_app(
                self.engine,
                self.key,
                clickhouse_url=f"http://{self.url_host}:{self.clickhouse_port}",
                network=self.network,
            )
            self.ui_port = await listen(ui_app, self.ui_port, DEFAULT_UI_PORT, "--ui-port")

        try:
            self._thread = serve_in_thread(loop, setup, "hyperdx-query-http")
        except BaseException:
            self._runners = []
            self._executor.shutdown(wait=False, cancel_futures=True)
            raise
        self._loop = loop
        return self

    def stop(self) -> None:
        """Stop listening (in-flight queries get a short grace period). Idempotent."""
        loop, thread, runners = self._loop, self._thread, self._runners
        self._loop, self._thread, self._runners = None, None, []
        if loop is not None and thread is not None:
            if loop.is_running():
                for runner in runners:
                    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not loop.is_running():
                loop.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
