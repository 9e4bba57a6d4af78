"""The ClickHouse HTTP interface of `hyperdx local` (read-only), for ClickHouse clients.

The subset that clickhouse-connect, ``@clickhouse/client`` and HyperDX's proxy use: ``GET
/ping``; ``GET``/``POST /`` with ``query=`` and/or a body (chunked accepted); ``database``,
``default_format``, ``query_id``, ``param_<name>`` and any other parameter as a setting;
auth by ``X-ClickHouse-User``/``X-ClickHouse-Key``, HTTP basic, or ``user``/``password``;
ClickHouse's response headers, error shape and gzip. Statements run on the store's
read-only sessions after :mod:`hyperdx.local.sql_guard` vetted them.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hmac
import json
import re
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hyperdx.local.peers import is_loopback
from hyperdx.local.request_body import read_capped
from hyperdx.local.sql_guard import GuardError, check_setting, refuse_write_head, vet
from hyperdx.local.store import ReadLimits, StoreError

if TYPE_CHECKING:
    from aiohttp import web

    from hyperdx.local.store import Store

#: ClickHouse's own max_query_size is 256 KiB; a query body over this is refused unread.
MAX_QUERY_BYTES = 1 << 20
ENGINE_VERSION = "26.9.2.1"

# URL parameters that are not settings (ClickHouse's HTTP handler reads them itself).
_NOT_SETTINGS = frozenset(
    {
        "query",
        "query_id",
        "database",
        "default_format",
        "user",
        "password",
        "quota_key",
        "session_id",
        "session_timeout",
        "session_check",
        "compress",
        "decompress",
        "buffer_size",
        "stacktrace",
        "role",
    }
)
# HTTP-only settings: this module implements them, the engine need not see them.
_HTTP_SETTINGS = frozenset(
    {
        "enable_http_compression",
        "http_zlib_compression_level",
        "wait_end_of_query",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "http_response_buffer_size",
        "add_http_cors_header",
        "http_write_exception_in_output_format",
        "http_wait_end_of_query",
        "http_response_headers",
    }
)
_CONTENT_TYPES = {
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONStrings": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "JSONCompactEachRow": "application/x-ndjson; charset=UTF-8",
    "JSONStringsEachRow": "application/x-ndjson; charset=UTF-8",
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "TabSeparatedWithNames": "text/tab-separated-values; charset=UTF-8",
    "TabSeparatedWithNamesAndTypes": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
    "Native": "application/octet-stream",
    "RowBinary": "application/octet-stream",
    "RowBinaryWithNamesAndTypes": "application/octet-stream",
    "Arrow": "application/octet-stream",
    "ArrowStream": "application/octet-stream",
    "Parquet": "application/octet-stream",
}
# HTTP status per ClickHouse error name (as ClickHouse's HTTP handler maps them).
_STATUS = {
    "AUTHENTICATION_FAILED": 401,
    "REQUIRED_PASSWORD": 401,
    "READONLY": 403,
    "ACCESS_DENIED": 403,
    "IP_ADDRESS_NOT_ALLOWED": 403,
    "SYNTAX_ERROR": 400,
    "UNKNOWN_FORMAT": 400,
    "UNKNOWN_SETTING": 400,
    "BAD_ARGUMENTS": 400,
    "CANNOT_PARSE_TEXT": 400,
    "CANNOT_PARSE_QUOTED_STRING": 400,
    "CANNOT_PARSE_DATE": 400,
    "CANNOT_PARSE_DATETIME": 400,
    "CANNOT_PARSE_NUMBER": 400,
    "UNKNOWN_QUERY_PARAMETER": 400,
    "BAD_QUERY_PARAMETER": 400,
    "TYPE_MISMATCH": 400,
    "ILLEGAL_TYPE_OF_ARGUMENT": 400,
    "NUMBER_OF_ARGUMENTS_DOESNT_MATCH": 400,
    "UNKNOWN_IDENTIFIER": 404,
    "UNKNOWN_FUNCTION": 404,
    "UNKNOWN_TABLE": 404,
    "UNKNOWN_DATABASE": 404,
    "UNKNOWN_TYPE": 404,
    "HTTP_LENGTH_REQUIRED": 411,
    "UNKNOWN_COMPRESSION_METHOD": 400,
}
_CHDB_ERROR = re.compile(r"Code: (\d+)\. DB::Exception: ")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)(?: \(version [^)]*\))?\.?\s*$")


@dataclass
class ClickHouseError(Exception):
    """An error in ClickHouse's shape (``Code: N. DB::Exception: ... (NAME)``)."""

    code: int
    name: str
    message: str
    status: int = 0

    def __post_init__(self) -> None:
        if not self.status:
            self.status = _STATUS.get(self.name, 500)

    @property
    def body(self) -> str:
        return (
            f"Code: {self.code}. DB::Exception: {self.message}. ({self.name}) "
            f"(version {ENGINE_VERSION})\n"
        )

    @classmethod
    def from_engine(cls, text: str) -> ClickHouseError:
        """chDB nests the message (``Code: 73. DB::Exception: Code: 73. ...``); keep the
        innermost text and the error name once."""
        starts = list(_CHDB_ERROR.finditer(text))
        if not starts:
            return cls(1001, "STD_EXCEPTION", text.strip() or "query failed")
        code = int(starts[-1].group(1))
        inner = text[starts[-1].end() :]
        name = "UNKNOWN_EXCEPTION"
        while (match := _NAME.search(inner)) is not None:
            name = match.group(1)
            inner = inner[: match.start()].rstrip()
        return cls(code, name, inner.rstrip(". ") or name)


def authentication_failed(user: str) -> ClickHouseError:
    return ClickHouseError(
        516,
        "AUTHENTICATION_FAILED",
        f"{user}: Authentication failed: password is incorrect, or there is no user with such name",
    )


def credentials(request: web.Request) -> tuple[str, str | None]:
    """(user, password) from the headers, HTTP basic auth or URL parameters."""
    headers, params = request.headers, request.query
    if "X-ClickHouse-User" in headers or "X-ClickHouse-Key" in headers:
        return headers.get("X-ClickHouse-User", "default"), headers.get("X-ClickHouse-Key")
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "default", None
        return user or "default", password
    if "user" in params or "password" in params:
        return params.get("user", "default"), params.get("password")
    return "default", None


def key_matches(given: str | None, key: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), key.encode())


@dataclass
class QueryEngine:
    """Runs HTTP-interface requests on the store's read sessions, within ``limits``."""

    store_ref: Any  # a callable returning the Store (None once stopping)
    limits: ReadLimits = field(default_factory=ReadLimits)
    max_query_bytes: int = MAX_QUERY_BYTES

    @property
    def store(self) -> Store | None:
        store: Store | None = self.store_ref()
        return store

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One query request (already authenticated); every failure becomes ClickHouse's
        error response, never a traceback."""
        query_id = request.query.get("query_id") or str(uuid.uuid4())
        try:
            return await self._handle(request, query_id)
        except ClickHouseError as exc:
            return error_response(exc, query_id)
        except Exception as exc:  # noqa: BLE001 - a bug must still answer in ClickHouse's shape
            return error_response(
                ClickHouseError(1001, "STD_EXCEPTION", f"{type(exc).__name__}: {exc}"),
                query_id,
            )

    async def _handle(self, request: web.Request, query_id: str) -> web.StreamResponse:
        from aiohttp import web

        params = request.query
        sql = params.get("query", "")
        try:
            refuse_write_head(sql)
        except GuardError as exc:
            raise ClickHouseError(exc.code, exc.name, str(exc)) from None
        body = await self._body(request)
        if body.strip():
            sql = f"{sql}\n{body}" if sql else body
        if not sql.strip():
            raise ClickHouseError(62, "SYNTAX_ERROR", "Empty query")
        caps = self.limits.as_settings()
        try:
            statement = vet(sql, caps)
            settings: dict[str, str] = {}
            for name, value in params.items():
                if name in _NOT_SETTINGS or name in _HTTP_SETTINGS or name.startswith("param_"):
                    continue
                if name == "readonly" and value in ("1", "2"):
                    continue  # already read-only
                check_setting(name, value, caps)
                settings[name] = value
        except GuardError as exc:
            raise ClickHouseError(exc.code, exc.name, str(exc)) from None
        fmt = statement.output_format or params.get("default_format") or "TabSeparated"
        query_params = {k[len("param_") :]: v for k, v in params.items() if k.startswith("param_")}
        store = self.store
        if store is None:
            raise ClickHouseError(210, "NETWORK_ERROR", "hyperdx local is stopping", 503)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                None,
                lambda: store.read(
                    statement.sql,
                    fmt,
                    params=query_params,
                    settings=settings,
                    database=params.get("database"),
                    limits=self.limits,
                ),
            )
        except StoreError as exc:
            raise ClickHouseError.from_engine(str(exc)) from None
        data = result.data
        if len(data) > self.limits.max_result_bytes:
            raise ClickHouseError(
                396,
                "TOO_MANY_ROWS_OR_BYTES",
                f"Limit for result exceeded, max bytes: {self.limits.max_result_bytes}, "
                f"current bytes: {len(data)}",
            )
        headers = {
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Server-Display-Name": "hyperdx-local",
            "X-ClickHouse-Summary": json.dumps(
                {
                    "read_rows": str(result.rows_read),
                    "read_bytes": str(result.bytes_read),
                    "written_rows": "0",
                    "written_bytes": "0",
                    "total_rows_to_read": str(result.rows_read),
                    "result_rows": str(result.result_rows),
                    "result_bytes": str(len(data)),
                    "elapsed_ns": str(int(result.elapsed_s * 1e9)),
                },
                separators=(",", ":"),
            ),
            "Content-Type": _CONTENT_TYPES.get(fmt, "text/plain; charset=UTF-8"),
        }
        encoding = _response_encoding(request, params)
        if encoding == "gzip":
            data = gzip.compress(data, compresslevel=3)
            headers["Content-Encoding"] = "gzip"
        elif encoding == "deflate":
            data = zlib.compress(data, 3)
            headers["Content-Encoding"] = "deflate"
        return web.Response(body=data, headers=headers)

    async def _body(self, request: web.Request) -> str:
        if request.content_length is not None and request.content_length > self.max_query_bytes:
            raise _too_large(request.content_length, self.max_query_bytes)
        raw = await read_capped(request.content, self.max_query_bytes)
        if len(raw) > self.max_query_bytes:
            raise _too_large(None, self.max_query_bytes)
        encoding = request.headers.get("Content-Encoding", "").lower().strip()
        if encoding not in ("", "identity"):
            raw = _decompress(encoding, raw, self.max_query_bytes)
        # Only the statement must be text: an insert's binary data after it still shows the
        # INSERT head, which is then refused as a write.
        return raw.decode("utf-8", errors="replace")


def _decompress(encoding: str, raw: bytes, cap: int) -> bytes:
    """The request body decoded (gzip/deflate always; lz4/zstd when their modules are
    installed, as with clickhouse-connect), never more than ``cap`` bytes of it."""
    try:
        if encoding in ("gzip", "deflate"):
            inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)
            out = inflater.decompress(raw, cap + 1)
        elif encoding == "lz4":
            import lz4.frame  # type: ignore[import-not-found,unused-ignore]

            out = lz4.frame.LZ4FrameDecompressor().decompress(raw, max_length=cap + 1)
        elif encoding == "zstd":
            import io

            import zstandard  # type: ignore[import-not-found,unused-ignore]

            out = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read(cap + 1)
        else:
            raise ImportError(encoding)
    except ImportError:
        raise ClickHouseError(
            638, "UNKNOWN_COMPRESSION_METHOD", f"Unknown Content-Encoding {encoding!r}", 400
        ) from None
    except Exception as exc:  # noqa: BLE001 - each codec has its own error class
        raise ClickHouseError(
            432, "UNKNOWN_CODEC", f"Cannot decompress the request body ({encoding}): {exc}", 400
        ) from None
    if len(out) > cap:
        raise _too_large(None, cap)
    return bytes(out)


def _too_large(size: int | None, cap: int) -> ClickHouseError:
    got = f" ({size} bytes)" if size is not None else ""
    return ClickHouseError(
        62, "SYNTAX_ERROR", f"Max query size exceeded: the query body is over {cap} bytes{got}"
    )


def _response_encoding(request: web.Request, params: Mapping[str, str]) -> str | None:
    if params.get("enable_http_compression") not in ("1", "true"):
        return None
    accepted = [
        p.split(";")[0].strip().lower()
        for p in request.headers.get("Accept-Encoding", "").split(",")
    ]
    for encoding in ("gzip", "deflate"):
        if encoding in accepted:
            return encoding
    return None


def error_response(exc: ClickHouseError, query_id: str | None = None) -> web.Response:
    from aiohttp import web

    headers = {
        "X-ClickHouse-Exception-Code": str(exc.code),
        "X-ClickHouse-Timezone": "UTC",
        "Content-Type": "text/plain; charset=UTF-8",
    }
    if query_id:
        headers["X-ClickHouse-Query-Id"] = query_id
    return web.Response(status=exc.status, text=exc.body, headers=headers)


def make_app(engine: QueryEngine, key: str, *, network: bool) -> web.Application:
    """The ClickHouse HTTP app: ``/ping`` open, every query authenticated with ``key``.

    Unless ``network`` (``--host`` given), only loopback peers are answered.
    """
    from aiohttp import web

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def query(request: web.Request) -> web.StreamResponse:
        if not network and not is_loopback(request.remote or ""):
            return error_response(
                ClickHouseError(
                    195,
                    "IP_ADDRESS_NOT_ALLOWED",
                    f"Connections from {request.remote} are not allowed: hyperdx local answers "
                    "loopback clients only (start it with --host to open it)",
                )
            )
        user, password = credentials(request)
        if not key_matches(password, key):
            return error_response(authentication_failed(user))
        return await engine.handle(request)

    async def not_found(request: web.Request) -> web.Response:
        return error_response(
            ClickHouseError(1001, "STD_EXCEPTION", f"There is no handle {request.path}", status=404)
        )

    app = web.Application(client_max_size=engine.max_query_bytes + 1)
    app.router.add_get("/ping", ping)
    app.router.add_route("GET", "/", query)
    app.router.add_route("POST", "/", query)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
