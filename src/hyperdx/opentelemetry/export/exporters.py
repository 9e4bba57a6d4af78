"""OTLP/HTTP exporters with the direct byte encoder, sliced so the GIL changes hands.

They subclass the stock ``OTLPSpanExporter`` / ``OTLPLogExporter`` and replace only the
encoding (and the gzip level): endpoint, headers, TLS, timeout, retry and the exporter's own
metrics all stay the SDK's. Encoding runs in slices of ``slice_size`` items with a short
sleep between slices: a pure-Python encode of a whole batch would otherwise hold the GIL for
milliseconds, and a request thread waiting for it pays up to the 5 ms switch interval each
time it comes back from I/O, which is what pushes a 1-worker server's p99 up.

Two collector answers the stock exporters treat as plain success or failure are handled here:
a 200 carrying OTLP partial success counts the rejected items as dropped, and a 413 splits
the batch in halves and sends each (an item too large on its own is a counted drop).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from ._batch import record_drop
from ._logs import encode_log
from ._spans import assemble, encode_snapshot, encode_span, group, group_encoded

Encoded = tuple[Any, Any, bytes]  # (resource, instrumentation scope or None, item bytes)

_logger = logging.getLogger(__name__)

DEFAULT_SLICE_SIZE = 32
DEFAULT_YIELD_SECONDS = 0.00005
# gzip -1: on OTLP batches it is ~10x cheaper than the stock level 9 for ~3 % more bytes.
DEFAULT_GZIP_LEVEL = 1


def encode_sliced(
    items: Sequence[Any],
    encode_item: Callable[[Any], bytes],
    slice_size: int,
    yield_seconds: float,
) -> bytes:
    """Encode ``items`` into an export request, sleeping briefly between slices."""
    encoded: list[bytes] = []
    for start in range(0, len(items), slice_size):
        if start:
            time.sleep(yield_seconds)  # releases the GIL long enough for a waiter to take it
        encoded.extend([encode_item(it) for it in items[start : start + slice_size]])
    return assemble(group(items, encoded))


def _gzip(data: bytes, level: int) -> bytes:
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31 = gzip container
    return comp.compress(data) + comp.flush()


_PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # requests' order of precedence


def _use_urllib3(client: Any) -> None:
    """Swap the default requests transport for the SDK's urllib3 one (same TLS settings).

    A POST costs ~560 us of CPU through requests and ~220 us through urllib3 here. requests
    also honours proxy variables (the swap is skipped when one is set) and, with the default
    ``verify=True``, the CA-bundle variables (passed on to urllib3 here)."""
    if any(os.environ.get(name) for name in _PROXY_ENV):
        return
    try:
        from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
        from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
    except ImportError:
        return
    old = getattr(client, "_transport", None)
    if type(old) is not RequestsHTTPTransport:
        return
    session = old._session
    verify = session.verify
    if verify is True:
        verify = next((os.environ[n] for n in _CA_BUNDLE_ENV if os.environ.get(n)), True)
    client._transport = _share_tls_context(Urllib3HTTPTransport(verify=verify, cert=session.cert))
    session.close()


def _share_tls_context(transport: Any) -> Any:
    """Give the transport's pool one TLS context for all its connections.

    Without one, urllib3 builds a context and loads the CA store for every new connection;
    against an endpoint whose TLS handshake keeps failing (plain HTTP behind an https:// URL)
    that grew a Flask app's RSS by ~45 MB in 20,000 requests (malloc fragmentation across
    the exporter threads); with a shared context it stays flat (tests/faults)."""
    pool = getattr(transport, "_pool", None)
    kw = getattr(pool, "connection_pool_kw", None)
    if kw is None or "ssl_context" in kw:
        return transport
    try:
        from urllib3.util.ssl_ import create_urllib3_context, resolve_cert_reqs

        context = create_urllib3_context(cert_reqs=resolve_cert_reqs(kw.get("cert_reqs")))
        if context.verify_mode != ssl.CERT_NONE and not kw.get("ca_certs"):
            context.load_default_certs()  # urllib3 loads a configured ca_certs itself
    except (ImportError, ssl.SSLError, ValueError) as error:
        _logger.debug("keeping urllib3's per-connection TLS contexts: %s", error)
        return transport
    kw["ssl_context"] = context
    return transport


class _FastEncodingMixin:
    """Shared plumbing; relies on the (1.45.1+) exporters' ``_client``/``_metrics``."""

    _client: Any
    _metrics: Any
    _shutdown: bool
    _max_request_size: int

    def __init__(
        self,
        *args: Any,
        slice_size: int = DEFAULT_SLICE_SIZE,
        yield_seconds: float = DEFAULT_YIELD_SECONDS,
        gzip_level: int = DEFAULT_GZIP_LEVEL,
        **kwargs: Any,
    ) -> None:
        """The stock exporter's constructor arguments, plus the tuning knobs."""
        super().__init__(*args, **kwargs)  # the stock exporter (next in the MRO)
        own = kwargs.get("session") is None and kwargs.get("_transport") is None and len(args) < 8
        self._setup_fast(slice_size, yield_seconds, gzip_level, own)

    def _setup_fast(
        self, slice_size: int, yield_seconds: float, gzip_level: int, own_transport: bool
    ) -> None:
        if slice_size <= 0:
            raise ValueError(f"slice_size must be positive, got {slice_size!r}")
        if not 0 <= gzip_level <= 9:
            raise ValueError(f"gzip_level must be 0..9, got {gzip_level!r}")
        self._slice_size = slice_size
        self._yield_seconds = max(0.0, yield_seconds)
        client: Any = getattr(self, "_client", None)
        self._fast = client is not None and hasattr(self, "_metrics")
        if not self._fast:
            _logger.warning("OTLP exporter internals changed; using the stock encoder")
            return
        from opentelemetry.exporter.otlp.common.http import Compression

        if getattr(client, "_compression", None) is Compression.GZIP:
            client._compress = lambda data: _gzip(data, gzip_level)
        if own_transport:
            _use_urllib3(client)
        self._watch_replies()

    def _after_fork(self) -> None:
        """A forked child must not share the parent's pooled sockets (interleaved requests)
        or a pool lock the parent's exporter thread held at fork time: new transport."""
        client: Any = getattr(self, "_client", None)
        transport: Any = getattr(client, "_transport", None)
        if type(transport).__name__ == "Urllib3HTTPTransport":
            from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport

            kw = transport._pool.connection_pool_kw
            verify: bool | str = kw.get("ca_certs") or kw.get("cert_reqs") != "CERT_NONE"
            cert = (kw["cert_file"], kw["key_file"]) if kw.get("key_file") else kw.get("cert_file")
            client._transport = _share_tls_context(Urllib3HTTPTransport(verify=verify, cert=cert))
            self._watch_replies()

    def export_encoded(self, items: Sequence[Encoded]) -> bool:
        """Send items the processors queued (see there); True on success.

        Items already encoded at hand-off are only joined; deferred ones (span snapshots) are
        encoded first, in slices. Compression releases the GIL (zlib), so the exporter
        thread holds it for short stretches only."""
        if not self._fast or self._shutdown:
            return False
        if self.encode_deferred is not None and items:
            items = self._finish_encoding(items)
            if not items:
                return True  # every item failed to encode, and was counted
        return self._send(items, None, self._kind_name)

    # Encodes the items a processor queued unencoded: tuples ``(resource, scope, *fields)``
    # whose third member is not bytes (the span processor's snapshots); None: there are none.
    encode_deferred: Callable[[Any], bytes] | None = None

    def _finish_encoding(self, items: Sequence[Any]) -> list[Encoded]:
        """``items`` as ``(resource, scope, bytes)``, every deferred item encoded,
        ``slice_size`` at a time with a short sleep in between (as :func:`encode_sliced`:
        short GIL holds); an item that cannot be encoded is left out and counted."""
        encode = self.encode_deferred
        assert encode is not None
        slice_size, pause = self._slice_size, self._yield_seconds
        out: list[Encoded] = []
        done = failed = 0
        for item in items:
            if type(item[2]) is bytes:
                out.append(item)
                continue
            if done and not done % slice_size:
                time.sleep(pause)  # releases the GIL long enough for a waiter to take it
            done += 1
            try:
                out.append((item[0], item[1], encode(item)))
            except Exception as error:  # noqa: BLE001 - counted, the rest is still sent
                if not failed:
                    _logger.error("cannot encode a %s: %r (counted)", self._kind_name, error)
                failed += 1
        if failed:
            record_drop(self._signal, "unencodable", failed)
        return out

    _kind_name = "item"
    _signal = "items"  # the drop account's name: "spans" / "logs"

    def _watch_replies(self) -> None:
        """Keep the transport's last answer (per thread): the exporter's result has the status
        but not the body, and a 200 body can carry an OTLP partial success."""
        transport: Any = getattr(getattr(self, "_client", None), "_transport", None)
        request = getattr(transport, "request", None)
        if request is None or getattr(request, "_hyperdx_watched", False):
            return
        replies = self._replies = threading.local()

        def watched(*args: Any, **kwargs: Any) -> Any:
            replies.last = result = request(*args, **kwargs)
            return result

        watched._hyperdx_watched = True  # type: ignore[attr-defined]
        transport.request = watched

    def _rejected_in_reply(self) -> int:
        """Items the collector rejected in its last 200 answer (OTLP partial success)."""
        result = getattr(getattr(self, "_replies", None), "last", None)
        if result is None:
            return 0
        try:
            body = result.content()
            return _partial_success_rejected(self._signal, body) if body else 0
        except Exception:  # noqa: BLE001 - a malformed answer is the collector's problem
            return 0

    def _send(
        self, items: Sequence[Any], encode_item: Callable[[Any], bytes] | None, kind: str
    ) -> bool:
        """Encode (unless ``encode_item`` is None: pre-encoded triples) and send.

        True when every item was delivered or counted as dropped here: rejected through
        partial success, or still too large for the collector (413) alone; a 413 batch is
        split in halves and each half sent. False when the batch failed as a whole (the
        caller counts it)."""
        replies = getattr(self, "_replies", None)
        if replies is not None:
            replies.last = None
        status = self._post(items, encode_item, kind)
        if status == 200:
            rejected = min(self._rejected_in_reply(), len(items))
            if rejected:
                _logger.warning(
                    "the collector rejected %d of %d %ss (partial success; counted)",
                    rejected,
                    len(items),
                    kind,
                )
                record_drop(self._signal, "rejected", rejected)
            return True
        if status != 413 or self._shutdown:
            return False
        if len(items) == 1:
            record_drop(self._signal, "too_large", 1)
            return True
        half = len(items) // 2
        for part in (items[:half], items[half:]):
            if not self._send(part, encode_item, kind):
                record_drop(self._signal, "export_failed", len(part))
        return True

    def _post(
        self, items: Sequence[Any], encode_item: Callable[[Any], bytes] | None, kind: str
    ) -> int | None:
        """One export request (with the SDK client's retries): 200 on success, else the
        last HTTP status or None. Mirrors the stock ``export`` bookkeeping."""
        with self._metrics.export_operation(len(items)) as result:
            try:
                if encode_item is None:
                    data = assemble(group_encoded(items))
                else:
                    data = encode_sliced(items, encode_item, self._slice_size, self._yield_seconds)
            except Exception as error:  # noqa: BLE001 - the stock exporter does the same
                _logger.error("Failed to encode %s batch: %s", kind, error)
                result.error = error
                return None
            limit = self._max_request_size
            if limit and limit > 0 and len(data) > limit:
                _logger.warning(
                    "Dropping %s batch: serialized size %d bytes exceeds max_request_size %d",
                    kind,
                    len(data),
                    limit,
                )
                result.error = ValueError(f"{kind} request of {len(data)} bytes exceeds {limit}")
                return None
            outcome = self._client.export(data)
            if not outcome.success:
                result.error = outcome.error
                return int(outcome.status_code) if outcome.status_code else None
        return 200


def _partial_success_rejected(signal: str, body: bytes) -> int:
    if signal == "spans":
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        return int(ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans)
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    return int(ExportLogsServiceResponse.FromString(body).partial_success.rejected_log_records)


class HyperDXSpanExporter(_FastEncodingMixin, OTLPSpanExporter):
    """``OTLPSpanExporter`` with the byte encoder; same constructor plus tuning knobs."""

    _kind_name = "span"
    _signal = "spans"
    encode_item = staticmethod(encode_span)
    encode_deferred = staticmethod(encode_snapshot)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self._fast:
            return super().export(spans)
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        ok = self._send(spans, encode_span, "span")
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE


class HyperDXLogExporter(_FastEncodingMixin, OTLPLogExporter):
    """``OTLPLogExporter`` with the byte encoder; same constructor plus tuning knobs."""

    _kind_name = "log"
    _signal = "logs"
    encode_item = staticmethod(encode_log)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if not self._fast:
            return super().export(batch)
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return LogRecordExportResult.FAILURE
        ok = self._send(batch, encode_log, "log")
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE
