"""End to end through a real OTLP receiver: everything arrives once, as the stock path sends it."""

from __future__ import annotations

import threading
import time
from typing import Any

from _factories import MemorySpans, varied_logs, varied_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from hyperdx.opentelemetry.export import (
    HyperDXBatchSpanProcessor,
    HyperDXLogExporter,
    HyperDXSpanExporter,
    dropped,
    make_log_processor,
    make_span_processor,
)
from hyperdx.opentelemetry.export._batch import Batcher

from support.otlp import running_receiver


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row.get("TraceId"), row.get("SpanId"), row.get("Timestamp"), str(row.get("Body")))


def test_spans_arrive_exactly_as_the_stock_exporter_sends_them() -> None:
    spans = varied_spans()
    with running_receiver() as (rx_stock, sink_stock), running_receiver() as (rx_ours, sink_ours):
        stock = OTLPSpanExporter(rx_stock.http_url + "/v1/traces", compression=Compression.Gzip)
        ours = HyperDXSpanExporter(rx_ours.http_url + "/v1/traces", compression=Compression.Gzip)
        assert stock.export(spans) is SpanExportResult.SUCCESS
        assert ours.export(spans) is SpanExportResult.SUCCESS
        want = sink_stock.wait_for("otel_traces", count=len(spans))
        got = sink_ours.wait_for("otel_traces", count=len(spans))
        assert len(got) == len(spans)
        assert sorted(got, key=_key) == sorted(want, key=_key)
        [request] = rx_ours.requests_for("traces")
        assert request.content_encoding == "gzip" and request.status == 200


def test_logs_arrive_exactly_as_the_stock_exporter_sends_them() -> None:
    records = varied_logs()
    with running_receiver() as (rx_stock, sink_stock), running_receiver() as (rx_ours, sink_ours):
        OTLPLogExporter(rx_stock.http_url + "/v1/logs").export(records)
        HyperDXLogExporter(rx_ours.http_url + "/v1/logs").export(records)
        want = sink_stock.wait_for("otel_logs", count=len(records))
        got = sink_ours.wait_for("otel_logs", count=len(records))
        assert len(got) == len(records)
        assert sorted(got, key=_key) == sorted(want, key=_key)


def test_processor_delivers_every_span_exactly_once_beside_a_user_processor() -> None:
    n = 3000
    before = dropped()
    users = MemorySpans()
    with running_receiver() as (rx, sink):
        provider = TracerProvider(resource=Resource.create({"service.name": "once"}))
        provider.add_span_processor(
            make_span_processor(rx.http_url + "/v1/traces", schedule_delay_millis=50)
        )
        provider.add_span_processor(SimpleSpanProcessor(users))  # the user's own keeps working
        tracer = provider.get_tracer("t")
        for i in range(n):
            with tracer.start_as_current_span(f"s{i}", attributes={"i": i}):
                pass
            if i % 256 == 255:
                time.sleep(0.01)  # a producer faster than any exporter would overflow 2048
        assert provider.force_flush(10_000)
        rows = sink.wait_for("otel_traces", count=n)
        provider.shutdown()
    assert len(rows) == n
    assert sorted(r["SpanName"] for r in rows) == sorted(f"s{i}" for i in range(n))
    assert len({r["SpanId"] for r in rows}) == n
    assert len(users.spans) == n
    assert dropped()["spans_queue_full"] == before.get("spans_queue_full", 0)


def test_log_processor_delivers_every_record() -> None:
    with running_receiver() as (rx, sink):
        provider = LoggerProvider(resource=Resource.create({"service.name": "logs-once"}))
        provider.add_log_record_processor(
            make_log_processor(rx.http_url + "/v1/logs", schedule_delay_millis=50)
        )
        logger = provider.get_logger("t")
        from opentelemetry._logs import LogRecord

        for i in range(500):
            logger.emit(LogRecord(body=f"line {i}", attributes={"i": i}))
        assert provider.force_flush(10_000)
        rows = sink.wait_for("otel_logs", count=500)
        provider.shutdown()
    assert sorted(r["Body"] for r in rows) == sorted(f"line {i}" for i in range(500))


class _BlockingExporter(SpanExporter):
    """Holds every export until released, so the queue fills up."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.received = 0

    def export(self, spans: Any) -> SpanExportResult:
        self.release.wait(10)
        self.received += len(spans)
        return SpanExportResult.SUCCESS


def test_queue_overflow_is_counted_never_silent() -> None:
    before = dropped().get("spans_queue_full", 0)
    exporter = _BlockingExporter()
    processor = HyperDXBatchSpanProcessor(
        exporter, schedule_delay_millis=10, max_queue_size=20, max_export_batch_size=10
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(200):
        with tracer.start_as_current_span(f"s{i}"):
            pass
    exporter.release.set()
    assert processor.force_flush(5000)
    lost = dropped()["spans_queue_full"] - before
    assert lost > 0
    assert exporter.received + lost == 200


def test_failed_exports_are_counted() -> None:
    before = dropped().get("spans_export_failed", 0)
    with running_receiver(api_keys=["the-right-key"]) as (rx, sink):
        processor = make_span_processor(rx.http_url + "/v1/traces", headers={})
        provider = TracerProvider()
        provider.add_span_processor(processor)
        for i in range(7):
            with provider.get_tracer("t").start_as_current_span(f"s{i}"):
                pass
        processor.force_flush(5000)
        assert sink.tables().get("otel_traces", 0) == 0
        assert [r.status for r in rx.requests_for("traces")] == [401]
    assert dropped()["spans_export_failed"] - before == 7


def test_items_after_shutdown_are_counted() -> None:
    batcher: Batcher[int] = Batcher(
        "test",
        lambda batch: True,
        schedule_delay_millis=10,
        max_queue_size=4,
        max_export_batch_size=2,
    )
    assert batcher.shutdown(1000)
    batcher.put(1)
    assert dropped()["test_after_shutdown"] == 1


def test_same_spans_through_stock_and_fast_pipelines_give_identical_rows() -> None:
    """One provider, two pipelines side by side: the SDK's BatchSpanProcessor + stock
    exporter, and ours (encoding at hand-off). The receivers must store identical rows."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    with running_receiver() as (rx_stock, sink_stock), running_receiver() as (rx_ours, sink_ours):
        provider = TracerProvider(resource=Resource.create({"service.name": "twin"}))
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(rx_stock.http_url + "/v1/traces"))
        )
        ours = make_span_processor(rx_ours.http_url + "/v1/traces", compression=Compression.Gzip)
        assert ours._encode is not None  # the hand-off encoding path is what this tests
        provider.add_span_processor(ours)
        tracer = provider.get_tracer("twin.lib", "3.1")
        for i in range(300):
            with tracer.start_as_current_span("parent", attributes={"i": i, "f": i / 3}) as p:
                p.add_event("e", {"k": [1, 2]})
                with tracer.start_as_current_span("child", attributes={"s": "x" * (i % 90)}):
                    pass
        assert provider.force_flush(10_000)
        want = sink_stock.wait_for("otel_traces", count=600)
        got = sink_ours.wait_for("otel_traces", count=600)
        provider.shutdown()
    assert len(got) == len(want) == 600
    assert sorted(got, key=_key) == sorted(want, key=_key)


def test_same_logs_through_stock_and_fast_pipelines_give_identical_rows() -> None:
    import logging

    from opentelemetry.sdk._logs import LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    with running_receiver() as (rx_stock, sink_stock), running_receiver() as (rx_ours, sink_ours):
        provider = LoggerProvider(resource=Resource.create({"service.name": "twin-logs"}))
        provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(rx_stock.http_url + "/v1/logs"))
        )
        ours = make_log_processor(rx_ours.http_url + "/v1/logs")
        assert ours._encode is not None
        provider.add_log_record_processor(ours)
        logger = logging.getLogger("tests.export.twin")
        logger.handlers = [LoggingHandler(logger_provider=provider)]
        logger.propagate = False
        tracer = TracerProvider().get_tracer("t")
        for i in range(200):
            with tracer.start_as_current_span("s"):
                logger.warning("event %d for %s", i, "bob", extra={"n": i, "ok": i % 2 == 0})
        assert provider.force_flush(10_000)
        want = sink_stock.wait_for("otel_logs", count=200)
        got = sink_ours.wait_for("otel_logs", count=200)
        provider.shutdown()
    assert sorted(got, key=_key) == sorted(want, key=_key)


def test_default_transport_is_urllib3_unless_a_proxy_is_configured(monkeypatch: Any) -> None:
    from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
    from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    fast = HyperDXSpanExporter("https://collector.invalid:4318/v1/traces")
    transport = fast._client._transport
    assert isinstance(transport, Urllib3HTTPTransport)
    assert transport._pool.connection_pool_kw["ca_certs"] == "/etc/ssl/certs/ca-certificates.crt"
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    proxied = HyperDXSpanExporter("https://collector.invalid:4318/v1/traces")
    assert isinstance(proxied._client._transport, RequestsHTTPTransport)


def test_flush_and_shutdown_respect_their_deadline_when_an_export_hangs() -> None:
    exporter = _BlockingExporter()  # never released: a dead, silent endpoint
    processor = HyperDXBatchSpanProcessor(
        exporter, schedule_delay_millis=10, max_queue_size=100, max_export_batch_size=5
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    for i in range(20):
        with provider.get_tracer("t").start_as_current_span(f"s{i}"):
            pass
    time.sleep(0.1)  # the worker is now stuck inside export()
    before = dropped().get("spans_shutdown_deadline", 0)
    t0 = time.monotonic()
    assert processor.force_flush(200) is False
    processor.shutdown(timeout_millis=300)
    assert time.monotonic() - t0 < 2.0
    assert dropped()["spans_shutdown_deadline"] - before == 15  # 5 are inside the stuck export
    exporter.release.set()


def test_forked_child_exports_its_own_spans_once_and_not_the_parents() -> None:
    import os

    with running_receiver() as (rx, sink):
        provider = TracerProvider(resource=Resource.create({"service.name": "forking"}))
        # Long delay and big batches: the parent's spans are still queued at fork time.
        provider.add_span_processor(
            make_span_processor(rx.http_url + "/v1/traces", schedule_delay_millis=60_000)
        )
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("warm"):
            pass
        assert provider.force_flush(5000)  # the parent now holds a pooled keep-alive socket
        for i in range(10):
            with tracer.start_as_current_span(f"before-{i}"):
                pass
        pid = os.fork()
        if pid == 0:  # child: its own spans only, through a fresh thread and connection
            code = 1
            try:
                for i in range(5):
                    with tracer.start_as_current_span(f"child-{i}"):
                        pass
                code = 0 if provider.force_flush(5000) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        for i in range(3):
            with tracer.start_as_current_span(f"after-{i}"):
                pass
        assert provider.force_flush(5000)
        rows = sink.wait_for("otel_traces", count=19)
        time.sleep(0.2)  # anything duplicated would have arrived by now
        names = sorted(r["SpanName"] for r in sink.rows("otel_traces"))
        provider.shutdown()
    expected = ["warm"] + [f"before-{i}" for i in range(10)] + [f"child-{i}" for i in range(5)]
    expected += [f"after-{i}" for i in range(3)]
    assert len(rows) >= 19
    assert names == sorted(expected)
