"""In-process CPU per span and per log record, end to end until the receiver has them.

Run inside one venv: ``python bench/cpu_per_item.py --mode plain --endpoint URL``. Prints one
JSON line. CPU is ``time.process_time()`` of this process (all threads: the producer and the
exporter thread), from the first item to ``force_flush`` returning, divided by the item
count. Items are produced in chunks with short sleeps (sleeping costs no CPU) so that the
default queue (2048) does not overflow; the receiver's count proves nothing was lost, and any
shortfall is reported as ``lost``.

Modes: ``plain`` = SDK BatchSpanProcessor/BatchLogRecordProcessor + stock OTLP/HTTP exporters
(gzip); ``fast`` = hyperdx.opentelemetry.export processors + exporters (gzip);
``ours`` = ``configure_opentelemetry()`` (whatever the distro wires by default);
``create`` = span creation / logging call with no processor (the SDK's floor).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import time
from typing import Any
from urllib.parse import urlsplit

CHUNK = 128
PAUSE = 0.004


def _stats(endpoint: str) -> dict[str, Any]:
    url = urlsplit(endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        conn.request("GET", "/stats")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _reset(endpoint: str) -> None:
    url = urlsplit(endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        conn.request("POST", "/reset", body=b"")
        conn.getresponse().read()
    finally:
        conn.close()


def _setup(mode: str, endpoint: str) -> tuple[Any, Any, Any, Any]:
    """Returns (tracer, logger, flush, resource) for a mode."""
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": "bench-cpu"})
    if mode == "ours":
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        os.environ.setdefault("OTEL_SERVICE_NAME", "bench-cpu")
        os.environ.setdefault("HYPERDX_API_KEY", "bench-key")
        from opentelemetry import trace

        from hyperdx.opentelemetry import configure_opentelemetry, force_flush

        configure_opentelemetry()
        return trace.get_tracer("bench"), logging.getLogger("bench"), force_flush, resource

    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk.trace import TracerProvider

    tp = TracerProvider(resource=resource)
    lp = LoggerProvider(resource=resource)
    if mode == "plain":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tp.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=endpoint + "/v1/traces", compression=Compression.Gzip)
            )
        )
        lp.add_log_record_processor(
            BatchLogRecordProcessor(
                OTLPLogExporter(endpoint=endpoint + "/v1/logs", compression=Compression.Gzip)
            )
        )
    elif mode == "fast":
        from hyperdx.opentelemetry.export import make_log_processor, make_span_processor

        tp.add_span_processor(
            make_span_processor(endpoint + "/v1/traces", compression=Compression.Gzip)
        )
        lp.add_log_record_processor(
            make_log_processor(endpoint + "/v1/logs", compression=Compression.Gzip)
        )
    elif mode != "create":
        raise SystemExit(f"--mode: unknown mode {mode!r}")
    handler = LoggingHandler(logger_provider=lp)
    logger = logging.getLogger("bench")
    logger.addHandler(handler)
    logger.propagate = False

    def flush() -> None:
        tp.force_flush()
        lp.force_flush()

    return tp.get_tracer("bench"), logger, flush, resource


def _produce_spans(tracer: Any, n: int) -> None:
    for start in range(0, n, CHUNK):
        for i in range(start, min(n, start + CHUNK)):
            with tracer.start_as_current_span(
                "work", attributes={"http.method": "GET", "http.route": "/items", "n": i}
            ):
                pass
        time.sleep(PAUSE)


def _produce_logs(logger: Any, n: int) -> None:
    for start in range(0, n, CHUNK):
        for i in range(start, min(n, start + CHUNK)):
            logger.warning("user %s did thing %d", "alice", i)
        time.sleep(PAUSE)


def measure(mode: str, endpoint: str, n: int) -> dict[str, Any]:
    tracer, logger, flush, _ = _setup(mode, endpoint)
    # Warm-up: imports, caches, connection pool.
    _produce_spans(tracer, 256)
    _produce_logs(logger, 256)
    flush()
    time.sleep(0.2)
    out: dict[str, Any] = {"mode": mode, "n": n}
    for kind, produce in (("span", _produce_spans), ("log", _produce_logs)):
        what = tracer if kind == "span" else logger
        signal = "traces" if kind == "span" else "logs"
        if mode != "create":
            _reset(endpoint)
        c0, w0 = time.process_time(), time.perf_counter()
        produce(what, n)
        flush()
        cpu = time.process_time() - c0
        wall = time.perf_counter() - w0
        got = n
        if mode != "create":
            deadline = time.monotonic() + 10
            while True:
                got = _stats(endpoint)["items"].get(signal, 0)
                if got >= n or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        out[f"{kind}_us"] = round(cpu / n * 1e6, 2)
        out[f"{kind}_wall_s"] = round(wall, 3)
        out[f"{kind}_lost"] = n - got
    if mode in ("fast", "ours"):
        try:
            from hyperdx.opentelemetry.export import dropped

            out["dropped"] = {k: v for k, v in dropped().items() if v}
        except ImportError:
            pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", required=True, choices=["plain", "fast", "ours", "create"])
    ap.add_argument("--endpoint", required=True, help="receiver base URL (bench/receiver.py)")
    ap.add_argument("-n", type=int, default=10000)
    args = ap.parse_args()
    print(json.dumps(measure(args.mode, args.endpoint, args.n)), flush=True)


if __name__ == "__main__":
    main()
