"""`hyperdx local`: the OTLP receiver writing into the chDB store, plus a loopback query
endpoint for the `hyperdx` CLI (chDB lets only this process open the data directory).

The query endpoint, ``POST /hyperdx/v1/query`` with ``{"sql": "...", "params": {...}}``,
requires the same ingestion key as OTLP and answers ``{"columns": [...], "rows": [...]}``.

Two read-only interfaces for other tools listen beside it (see :mod:`query_listeners`):
ClickHouse's HTTP interface (``--clickhouse-port``) and HyperDX's API for `hdx`
(``--ui-port``); both take the same key.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hyperdx.local.clickhouse_http import QueryEngine
from hyperdx.local.client import QUERY_PATH, ServerState
from hyperdx.local.peers import is_loopback
from hyperdx.local.query_listeners import QueryListeners
from hyperdx.local.request_body import read_capped
from hyperdx.local.resident import bound_c_heap
from hyperdx.local.store import (
    KEY_FILE,
    STATE_FILE,
    ChdbSink,
    DataDirInUse,
    ReadLimits,
    Store,
    StoreError,
    data_dir_size,
    default_data_dir,
    human_size,
    import_chdb_without_arrow,
)

MAX_QUERY_BODY = 1 << 20
REQUEST_LOG_KEEP = 1000


class ServerError(RuntimeError):
    """`hyperdx local` cannot start as configured (message says which option to change)."""


@dataclass(frozen=True)
class ApiKey:
    value: str
    source: str  # "generated" (first start), "data-dir" (kept from before), "flag", "env"


def resolve_key(data_dir: Path, given: str | None) -> ApiKey:
    """The key to require: given (flag or $HYPERDX_LOCAL_API_KEY), else the one kept in the
    data directory, else a new UUIDv4 (ClickStack's key format) saved there with mode 0600."""
    if given is not None:
        if not given.strip():
            raise ServerError("--api-key / HYPERDX_LOCAL_API_KEY: the key must not be empty")
        source = "env" if os.environ.get("HYPERDX_LOCAL_API_KEY") == given else "flag"
        return ApiKey(given, source)
    path = data_dir / KEY_FILE
    if path.exists():
        kept = path.read_text(encoding="utf-8").strip()
        if kept:
            return ApiKey(kept, "data-dir")
    key = str(uuid.uuid4())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    return ApiKey(key, "generated")


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


class LocalServer:
    """Store + Receiver + query route; :meth:`start` returns once both listeners are up."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        http_port: int = 4318,
        grpc_port: int = 4317,
        api_key: str | None = None,
        clickhouse_port: int | None = None,
        ui_port: int | None = None,
        query_limits: ReadLimits | None = None,
    ) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.query_ports = (clickhouse_port, ui_port)
        self.query_limits = query_limits or ReadLimits()
        self.listeners: QueryListeners | None = None
        self.host = host
        self.requested_ports = (http_port, grpc_port)
        self.api_key_option = api_key
        self.store: Store | None = None
        self.receiver: Any = None
        self.key: ApiKey | None = None
        self._wrote_state = False

    def start(self) -> LocalServer:
        from hyperdx.local.receiver import Receiver

        self.store = Store.open(self.data_dir)
        self.store.release_startup_pages()  # ~250 MB of RSS a long-running server never uses
        try:
            self.key = resolve_key(self.data_dir, self.api_key_option)
            self.receiver = Receiver(
                ChdbSink(self.store),
                host=self.host,
                http_port=self.requested_ports[0],
                grpc_port=self.requested_ports[1],
                api_keys=[self.key.value],
            )
            self.receiver.add_route("POST", QUERY_PATH, self._query_handler)
            self.receiver.start()
            self.listeners = QueryListeners(
                QueryEngine(lambda: self.store, self.query_limits),
                self.key.value,
                host=self.host,
                clickhouse_port=self.query_ports[0],
                ui_port=self.query_ports[1],
                network=not is_loopback(self.host),
            ).start()
            _write_private(
                self.data_dir / STATE_FILE, json.dumps(self.state.to_json(), indent=2) + "\n"
            )
            self._wrote_state = True
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def state(self) -> ServerState:
        assert self.key is not None and self.receiver is not None
        return ServerState(
            pid=os.getpid(),
            host={"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host),
            http_port=int(self.receiver.http_port),
            grpc_port=int(self.receiver.grpc_port),
            api_key=self.key.value,
        )

    def stop(self) -> None:
        """Stop listening (in-flight requests finish), drop the state file, close chDB."""
        if self.receiver is not None:
            self.receiver.stop()
            self.receiver = None
        if self.listeners is not None:
            self.listeners.stop()
            self.listeners = None
        if self._wrote_state:  # never touch the state of the instance that owns the dir
            (self.data_dir / STATE_FILE).unlink(missing_ok=True)
            self._wrote_state = False
        if self.store is not None:
            self.store.close()
            self.store = None

    def trim_request_log(self, keep: int = REQUEST_LOG_KEEP) -> None:
        """The receiver records every request (for tests and diagnostics); a long-running
        server keeps only the latest ``keep`` so memory stays bounded."""
        requests = getattr(self.receiver, "requests", None)
        if requests is not None and len(requests) > keep:
            del requests[:-keep]  # one list operation: atomic under the GIL

    async def _query_handler(self, request: Any) -> Any:
        import asyncio

        from aiohttp import web

        def error(status: int, message: str) -> web.Response:
            return web.json_response({"code": 3, "message": message}, status=status)

        # The ingestion key is shared with every app that sends telemetry; SQL on the data is
        # for this machine only, even when OTLP listens on the network (--host).
        if not is_loopback(request.remote or ""):
            return error(403, "the query endpoint answers loopback clients only")
        if request.content_length is not None and request.content_length > MAX_QUERY_BODY:
            return error(413, f"query body over {MAX_QUERY_BODY} bytes")
        raw = await read_capped(request.content, MAX_QUERY_BODY)
        if len(raw) > MAX_QUERY_BODY:
            return error(413, f"query body over {MAX_QUERY_BODY} bytes")
        try:
            doc = json.loads(raw)
            sql = doc["sql"]
            params = doc.get("params") or {}
            if not isinstance(sql, str) or not isinstance(params, dict):
                raise TypeError("sql must be a string and params an object")
        except (ValueError, KeyError, TypeError) as exc:
            return error(400, f'body must be {{"sql": "...", "params": {{...}}}}: {exc}')
        store = self.store
        if store is None:
            return error(503, "hyperdx local is stopping")
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, store.query, sql, params)
        except StoreError as exc:
            return error(400, str(exc))
        return web.json_response(result.to_json(), dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def banner(server: LocalServer) -> str:
    """What to tell the user: where data goes and the exact lines that point the SDK here."""
    state, key = server.state, server.key
    assert key is not None
    host = f"[{state.host}]" if ":" in state.host else state.host
    endpoint = f"http://{host}:{state.http_port}"
    if key.source == "generated":
        key_line = f"export HYPERDX_API_KEY={key.value}"
        key_note = f"Generated an ingestion key (kept in {server.data_dir / KEY_FILE})."
    elif key.source == "env":
        key_line = 'export HYPERDX_API_KEY="$HYPERDX_LOCAL_API_KEY"'
        key_note = "Ingestion key: from $HYPERDX_LOCAL_API_KEY."
    elif key.source == "flag":
        key_line = "export HYPERDX_API_KEY=<the key given with --api-key>"
        key_note = "Ingestion key: from --api-key."
    else:
        key_line = f'export HYPERDX_API_KEY="$(cat {server.data_dir / KEY_FILE})"'
        key_note = f"Ingestion key: kept in {server.data_dir / KEY_FILE}."
    return "\n".join(
        [
            f"hyperdx local: ClickStack tables in chDB at {server.data_dir} "
            f"({human_size(data_dir_size(server.data_dir))} on disk, pid {state.pid})",
            f"  OTLP/HTTP  {endpoint}  (/v1/traces, /v1/logs, /v1/metrics)",
            f"  OTLP/gRPC  {host}:{state.grpc_port}",
            key_note,
            "Point the SDK at it:",
            f"  export OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}",
            f"  {key_line}",
            "  export OTEL_SERVICE_NAME=my-service",
            "Then: hyperdx logs -f | hyperdx traces | hyperdx trace <id> | hyperdx metrics"
            ' | hyperdx sql "..."      (Ctrl-C stops)',
            *connect_lines(server),
        ]
    )


def connect_lines(server: LocalServer) -> list[str]:
    """How to read the data with HyperDX's `hdx` and with ClickHouse clients (the key comes
    from $HYPERDX_API_KEY, exported as the lines above say)."""
    listeners = server.listeners
    if listeners is None:
        return []
    host = listeners.url_host
    ui = f"http://{host}:{listeners.ui_port}"
    clickhouse = f"http://{host}:{listeners.clickhouse_port}"
    bare_host = host.strip("[]")
    return [
        f"  ClickHouse HTTP  {clickhouse}  (read-only; user default, password = the key)",
        f"  HyperDX API      {ui}  (for the hdx CLI)",
        "Read it with HyperDX's CLI (npm i -g @hyperdx/cli):",
        f'  hdx auth login -a {ui} -e you@localhost -p "$HYPERDX_API_KEY"',
        "  hdx tui",
        "or any ClickHouse client, e.g. clickhouse-connect:",
        f"  client = clickhouse_connect.get_client(host='{bare_host}', "
        f"port={listeners.clickhouse_port}, password=os.environ['HYPERDX_API_KEY'])",
    ]


def serve(
    *,
    data_dir: Path | None,
    host: str,
    http_port: int,
    grpc_port: int,
    api_key: str | None,
    clickhouse_port: int | None = None,
    ui_port: int | None = None,
    query_limits: ReadLimits | None = None,
    out: TextIO | None = None,
    ready: Callable[[LocalServer], None] | None = None,
) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code (1 = could not start)."""
    out = out or sys.stdout
    err = sys.stderr
    if not is_loopback(host):
        # Authentication is always on (a key is generated if none is given); say so, since
        # the data is now reachable from the network.
        print(
            f"hyperdx local: listening on non-loopback {host}: the ingestion key is required",
            file=err,
        )
    bound_c_heap()  # this process is the server: its C heap may be tuned for it
    import_chdb_without_arrow()
    server = LocalServer(
        data_dir or default_data_dir(),
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        api_key=api_key,
        clickhouse_port=clickhouse_port,
        ui_port=ui_port,
        query_limits=query_limits,
    )
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        try:
            server.start()
        except DataDirInUse as exc:
            print(f"hyperdx local: {exc}", file=err)
            return 1
        except OSError as exc:
            print(f"hyperdx local: {exc}", file=err)
            print(
                "  (another collector or hyperdx local on that port? pick others with "
                "--http-port / --grpc-port / --clickhouse-port / --ui-port, 0 = any free port)",
                file=err,
            )
            return 1
        except (ServerError, StoreError) as exc:
            print(f"hyperdx local: {exc}", file=err)
            return 1
        print(banner(server), file=out, flush=True)
        if server.store is not None and server.store.replayed:
            counts = ", ".join(f"{n} for {table}" for table, n in server.store.replayed.items())
            print(
                f"hyperdx local: stored the requests journaled before the last stop ({counts})",
                file=err,
                flush=True,
            )
        for note in server.listeners.notes if server.listeners else []:
            print(f"hyperdx local: {note}", file=err, flush=True)
        if ready is not None:
            ready(server)
        while not stop.wait(0.5):
            server.trim_request_log()
        print("hyperdx local: stopping", file=out, flush=True)
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
