"""CPU of one span on the application thread: start_as_current_span + attributes + end.

Modes (one per process, so nothing is shared):
  bare   the SDK TracerProvider with no processor (the floor)
  stock  the SDK with BatchSpanProcessor + the stock OTLP/HTTP exporter (what the vanilla
         agent builds)
  ours   the provider configure_opentelemetry() builds (baggage copy, URL hygiene, our
         batch processor that encodes at span end)

Spans look like an HTTP server span from an instrumentation (kind SERVER, 8 start
attributes, a status code at the end). Prints one JSON line: thread CPU us per span (the
request thread's cost, export thread excluded) and process CPU us per span.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

ATTRS = {
    "http.request.method": "GET",
    "url.scheme": "http",
    "url.path": "/hello",
    "server.address": "127.0.0.1",
    "server.port": 8000,
    "network.protocol.version": "1.1",
    "user_agent.original": "wrk",
    "client.address": "127.0.0.1",
}


def provider(mode: str, endpoint: str) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({"service.name": "span-cost"})
    if mode == "bare":
        return TracerProvider(resource=resource, shutdown_on_exit=False)
    if mode == "stock":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tp = TracerProvider(resource=resource, shutdown_on_exit=False)
        tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint + "/v1/traces")))
        return tp
    from hyperdx.opentelemetry import configure_opentelemetry

    pipeline = configure_opentelemetry(
        service_name="span-cost", traces_endpoint=endpoint + "/v1/traces", instrument=False
    )
    assert pipeline is not None
    return pipeline.tracer_provider


def measure(tp: Any, n: int) -> tuple[float, float]:
    from opentelemetry.trace import SpanKind, StatusCode

    tracer = tp.get_tracer("bench.instrumentation", "1.0")
    for _ in range(min(n, 500)):  # warm-up
        with tracer.start_as_current_span("GET /hello", kind=SpanKind.SERVER, attributes=ATTRS):
            pass
    t0, p0 = time.thread_time(), time.process_time()
    for _ in range(n):
        with tracer.start_as_current_span(
            "GET /hello", kind=SpanKind.SERVER, attributes=ATTRS
        ) as span:
            span.set_attribute("http.response.status_code", 200)
            span.set_status(StatusCode.UNSET)
    thread = time.thread_time() - t0
    tp.force_flush()
    process = time.process_time() - p0
    return thread / n * 1e6, process / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("bare", "stock", "ours"), required=True)
    ap.add_argument("--endpoint", default="http://127.0.0.1:9")
    ap.add_argument("-n", type=int, default=20000)
    args = ap.parse_args()
    tp = provider(args.mode, args.endpoint)
    thread_us, process_us = measure(tp, args.n)
    print(json.dumps({"mode": args.mode, "thread_us": thread_us, "process_us": process_us}))


if __name__ == "__main__":
    main()
