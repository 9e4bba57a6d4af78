"""Export-path components in isolation (CPU, best of several repeats): encoders, gzip
levels, HTTP transports. Run inside a venv with the SDK and hyperdx installed."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _best_us(fn: Callable[[], Any], items: int, repeat: int = 7, number: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - t0) / number)
    return best / items * 1e6


def _three_attr_spans(n: int) -> list[Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    out: list[Any] = []

    class Keep(SpanExporter):
        def export(self, batch: Any) -> SpanExportResult:
            out.extend(batch)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Keep()))
    tracer = provider.get_tracer("bench")
    for i in range(n):
        attrs = {"http.method": "GET", "http.route": "/items", "n": i}
        with tracer.start_as_current_span("work", attributes=attrs):
            pass
    return out


def _logs(n: int) -> list[Any]:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import (
        LogRecordExporter,
        LogRecordExportResult,
        SimpleLogRecordProcessor,
    )

    out: list[Any] = []

    class Keep(LogRecordExporter):
        def export(self, batch: Any) -> LogRecordExportResult:
            out.extend(batch)
            return LogRecordExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(Keep()))
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    logger = logging.getLogger("bench.components")
    logger.handlers = [LoggingHandler(logger_provider=provider)]
    logger.propagate = False
    for i in range(n):
        logger.warning("user %s did thing %d", "alice", i)
    return out


def run(endpoint: str | None) -> list[dict[str, Any]]:
    from gil_probe import make_spans
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from hyperdx.opentelemetry.export._logs import encode_logs_bytes
    from hyperdx.opentelemetry.export._spans import encode_spans_bytes

    rows: list[dict[str, Any]] = []
    n = 512
    for label, items in (
        ("span, 3 attributes", _three_attr_spans(n)),
        ("server span, 12 attributes", make_spans(n)),
    ):
        stock = _best_us(lambda items=items: encode_spans(items).SerializeToString(), n)
        ours = _best_us(lambda items=items: encode_spans_bytes(items), n)
        rows.append({"what": f"encode {label}", "stock_us": stock, "ours_us": ours})
    logs = _logs(n)
    rows.append(
        {
            "what": "encode log record",
            "stock_us": _best_us(lambda: encode_logs(logs).SerializeToString(), n),
            "ours_us": _best_us(lambda: encode_logs_bytes(logs), n),
        }
    )
    data = encode_spans_bytes(make_spans(n))

    def gzip_file(level: int) -> bytes:  # what the stock exporter does (level 9)
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="w", compresslevel=level) as gz:
            gz.write(data)
        return buf.getvalue()

    def gzip_1() -> bytes:
        comp = zlib.compressobj(1, zlib.DEFLATED, 31)
        return comp.compress(data) + comp.flush()

    rows.append(
        {
            "what": "gzip a 512-span batch, per span",
            "stock_us": _best_us(lambda: gzip_file(9), n),
            "ours_us": _best_us(gzip_1, n),
            "note": f"{len(gzip_file(9))} vs {len(gzip_1())} bytes",
        }
    )
    if endpoint:
        from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
        from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport

        body = gzip_1()
        headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
        url = endpoint + "/v1/traces"
        cost = {}
        for name, transport in (
            ("requests", RequestsHTTPTransport()),
            ("urllib3", Urllib3HTTPTransport()),
        ):

            def post(t: Any = transport) -> None:
                t.request("POST", url, headers=headers, data=body, timeout=5)

            post()
            cost[name] = _best_us(post, 1, repeat=5, number=20)
        rows.append(
            {
                "what": "one POST (CPU of the client)",
                "stock_us": cost["requests"],
                "ours_us": cost["urllib3"],
                "note": "requests vs urllib3 transport",
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoint")
    args = ap.parse_args()
    for row in run(args.endpoint):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
