"""Profile of the export path's effect on other threads: GIL hold time and request latency.

An exporter thread exports 512-span batches (realistic server spans, ~12 attributes) to the
counting receiver, back to back, while the main thread plays a 1-worker server: ~0.3 ms of
Python work, then a 0.5 ms blocking wait (as if for the socket), repeatedly. Reported:

Exporters: ``stock`` (SDK encoder), ``fast-unsliced`` (byte encoder, whole batch at once),
``fast`` (byte encoder in slices with GIL hand-overs: what ``export()`` does under the SDK's
own BatchSpanProcessor), ``fast-handoff`` (items encoded at hand-off: what our processor did
until 2026-11-30), ``fast-deferred`` (span snapshots encoded by the export thread in slices:
what it does now).

- ``wake_p50/p99/max_ms``: how late the main thread gets the GIL back after its blocking wait
  (the GIL hold time of the exporter as the request thread feels it);
- ``req_p50/p99_ms``: latency of one simulated request (work + wait);
- ``export_ms``: wall time of one batch export; ``encode_us_per_span``: CPU of encoding alone.

Run inside a venv with the SDK (and hyperdx installed for the ``fast`` exporter).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any


def make_spans(n: int) -> list[Any]:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.trace import SpanKind

    spans: list[Any] = []

    class Keep(SpanExporter):
        def export(self, batch: Any) -> SpanExportResult:
            spans.extend(batch)
            return SpanExportResult.SUCCESS

    provider = TracerProvider(resource=Resource.create({"service.name": "probe"}))
    provider.add_span_processor(SimpleSpanProcessor(Keep()))
    tracer = provider.get_tracer("opentelemetry.instrumentation.flask", "0.66b1")
    for i in range(n):
        attrs = {
            "http.request.method": "GET",
            "url.scheme": "http",
            "server.address": "127.0.0.1",
            "server.port": 8000,
            "network.peer.address": "127.0.0.1",
            "network.peer.port": 40000 + i % 1000,
            "user_agent.original": "wrk",
            "http.route": "/",
            "url.path": "/",
            "network.protocol.version": "1.1",
            "http.response.status_code": 200,
            "client.address": "127.0.0.1",
        }
        with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER, attributes=attrs):
            pass
    return spans


def make_exporter(kind: str, endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.http import Compression

    url = endpoint + "/v1/traces"
    if kind == "stock":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(url, compression=Compression.Gzip)
    from hyperdx.opentelemetry.export import HyperDXSpanExporter

    if kind == "fast-unsliced":
        return HyperDXSpanExporter(url, compression=Compression.Gzip, slice_size=1 << 30)
    return HyperDXSpanExporter(url, compression=Compression.Gzip)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def probe(kind: str, endpoint: str, seconds: float, spans: list[Any]) -> dict[str, Any]:
    exporter = make_exporter(kind, endpoint) if kind != "none" else None
    stop = threading.Event()
    export_ms: list[float] = []

    batch: Any = spans
    send = exporter.export if exporter is not None else None
    if kind == "fast-handoff":
        # What HyperDXBatchSpanProcessor does: spans were encoded in on_end (on the request
        # thread), so the exporter thread only joins, compresses and posts.
        from hyperdx.opentelemetry.export._spans import encode_span

        batch = [(s.resource, s.instrumentation_scope, encode_span(s)) for s in spans]
        send = exporter.export_encoded
    elif kind == "fast-deferred":
        # What HyperDXBatchSpanProcessor does now: spans are queued as snapshots of their
        # fields, and the exporter thread encodes them in slices, then joins, compresses, posts.
        from hyperdx.opentelemetry.export._spans import snapshot

        batch = [snapshot(s) for s in spans]
        assert all(item is not None for item in batch)
        send = exporter.export_encoded

    def exporting() -> None:
        assert send is not None
        while not stop.is_set():
            t0 = time.perf_counter()
            send(batch)
            export_ms.append((time.perf_counter() - t0) * 1000)
            stop.wait(0.02)  # a busy server fills a 512 batch every ~0.2-0.5 s; be harsher

    thread = threading.Thread(target=exporting, daemon=True) if exporter else None
    if thread:
        thread.start()
    wakes: list[float] = []
    reqs: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        _spin(0.0003)
        t1 = time.perf_counter()
        time.sleep(0.0005)
        t2 = time.perf_counter()
        wakes.append((t2 - t1 - 0.0005) * 1000)
        reqs.append((t2 - t0) * 1000)
    stop.set()
    if thread:
        thread.join(10)
    encode_us = None
    if exporter is not None:
        if kind == "stock":
            from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

            def enc() -> Any:
                return encode_spans(spans).SerializePartialToString()
        else:
            from hyperdx.opentelemetry.export._spans import encode_spans_bytes

            def enc() -> Any:
                return encode_spans_bytes(spans)

        c0 = time.process_time()
        for _ in range(10):
            enc()
        encode_us = (time.process_time() - c0) / (10 * len(spans)) * 1e6
    return {
        "exporter": kind,
        "wake_p50_ms": round(statistics.median(wakes), 3),
        "wake_p99_ms": round(_pct(wakes, 0.99), 3),
        "wake_max_ms": round(max(wakes), 3),
        "req_p50_ms": round(statistics.median(reqs), 3),
        "req_p99_ms": round(_pct(reqs, 0.99), 3),
        "export_ms": round(statistics.median(export_ms), 2) if export_ms else None,
        "exports": len(export_ms),
        "encode_us_per_span": round(encode_us, 2) if encode_us else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--kinds", default="none,stock,fast-unsliced,fast,fast-handoff,fast-deferred")
    args = ap.parse_args()
    spans = make_spans(512)
    for kind in args.kinds.split(","):
        print(json.dumps(probe(kind, args.endpoint, args.seconds, spans)), flush=True)


if __name__ == "__main__":
    main()
