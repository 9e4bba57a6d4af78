"""The fast server histograms (``metrics_fast``): the same export as the SDK's histograms, the
SDK path wherever the fast one could differ, bounded attribute sets, forks and shutdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    Histogram,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

from hyperdx.opentelemetry import metrics_fast

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


def run_script(args: list[str], **env: str) -> str:
    result = subprocess.run(
        [PYTHON, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=HERE,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("semconv", ["", "http/dup"])
@pytest.mark.parametrize("temporality", ["delta", "cumulative"])
def test_same_requests_export_identical_histograms(semconv: str, temporality: str) -> None:
    """WSGI and ASGI requests (durations and body sizes, old and new keys), four collections:
    every exported field equal, timestamps compared by what they mean."""
    out = json.loads(
        run_script(["fast_histogram_run.py", temporality], OTEL_SEMCONV_STABILITY_OPT_IN=semconv)
    )
    sdk, fast = out["sdk"], out["fast"]
    names = {m["name"] for c in sdk if c for m in _metrics(c)}
    expected = {"http.server.duration", "http.server.request.size", "http.server.response.size"}
    if semconv:
        expected |= {
            "http.server.request.duration",
            "http.server.request.body.size",
            "http.server.response.body.size",
        }
    assert names == expected
    assert fast == sdk
    text = json.dumps(sdk)
    for field in ("start_time_unix_nano", "time_unix_nano"):  # every timestamp was explained
        assert f'"{field}": "' in text and f'"{field}": 1' not in text
    if temporality == "delta":
        assert _metrics(sdk[2]) == []  # an interval without requests exports no histogram
        # after an empty interval a point starts at the (empty) collection before it
        assert '"start_time_unix_nano": "C3"' in json.dumps(sdk[3])
    else:
        assert all(len(_metrics(c)) == len(_metrics(sdk[0])) for c in sdk)  # every interval
        assert '"start_time_unix_nano": "C' not in text  # starts when the set was first seen
    assert '"start_time_unix_nano": "R4"' in json.dumps(sdk[3])  # a set first seen in round 4


def _metrics(collection: Any) -> list[dict[str, Any]]:
    return [
        metric
        for resource in collection["resource_metrics"]
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
    ]


def _provider(
    *,
    adopt: bool = True,
    temporality: AggregationTemporality = AggregationTemporality.CUMULATIVE,
    **kwargs: Any,
) -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader(
        preferred_temporality={Histogram: temporality},
        preferred_aggregation=kwargs.pop("preferred_aggregation", None),
    )
    kwargs.setdefault("exemplar_filter", AlwaysOffExemplarFilter())
    provider = MeterProvider(metric_readers=[reader], **kwargs)
    if adopt:
        metrics_fast.adopt(provider)
    return provider, reader


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_attribute_sets_overflow_after_the_limit_into_one_series() -> None:
    provider, reader = _provider()
    histogram = metrics_fast.histogram(provider.get_meter("s").create_histogram("h", unit="ms"))
    assert isinstance(histogram, metrics_fast.FastHistogram)
    limit = metrics_fast.MAX_ATTRIBUTE_SETS
    for i in range(limit + 3):
        histogram.record(i % 7, {"route": f"/r{i}", "code": 200})
    histogram.record(5, {"route": "/r0", "code": 200})  # a known set keeps its own series
    histogram.record(40, {"route": "/new", "code": 200})
    histogram.record(9, {"route": ["/a", "/b"]})  # a set never remembered: capped all the same
    points = {tuple(sorted(p.attributes.items())): p for p in _points(reader, "h")}
    assert len(points) == limit + 1
    overflow = points[(("otel.metric.overflow", True),)]
    assert overflow.count == 5
    assert overflow.sum == (limit % 7) + ((limit + 1) % 7) + ((limit + 2) % 7) + 40 + 9
    assert overflow.max == 40
    first = points[(("code", 200), ("route", "/r0"))]
    assert (first.count, first.sum, first.min, first.max) == (2, 5, 0, 5)


def test_sets_in_another_key_order_or_value_type_are_the_sdks_series() -> None:
    """The SDK merges key orders and keeps True, 1 and 1.0 apart; so does the fast path."""
    fast_provider, fast_reader = _provider()
    sdk_provider, sdk_reader = _provider(adopt=False)
    for provider in (fast_provider, sdk_provider):
        histogram = metrics_fast.histogram(provider.get_meter("s").create_histogram("h"))
        for _ in range(3):
            histogram.record(1, {"a": "x", "b": 1})
            histogram.record(2, {"b": 1, "a": "x"})
            histogram.record(3, {"a": "x", "b": True})
            histogram.record(4, {"a": "x", "b": 1.0})
            histogram.record(5, None)
            histogram.record(6, {})
    fast, sdk = _points(fast_reader, "h"), _points(sdk_reader, "h")
    assert len(fast) == 4
    assert [(dict(p.attributes), p.count, p.sum) for p in fast] == [
        (dict(p.attributes), p.count, p.sum) for p in sdk
    ]
    assert [type(p.attributes["b"]) for p in fast if p.attributes] == [int, bool, float]


def test_an_sdk_instrument_of_the_same_name_shares_the_series_and_exports_once() -> None:
    provider, reader = _provider()
    meter = provider.get_meter("scope", "1.0")
    plain = meter.create_histogram("http.server.duration", unit="ms", description="d")
    fast = metrics_fast.histogram(meter.create_histogram("http.server.duration", "ms", "d"))
    assert isinstance(fast, metrics_fast.FastHistogram) and fast.instrument is plain
    plain.record(10, {"k": "v"})
    fast.record(20, {"k": "v"})
    plain.record(30, {"k": "v"})
    data = reader.get_metrics_data()
    assert data is not None
    metrics = [m for s in data.resource_metrics[0].scope_metrics for m in s.metrics]
    assert [m.name for m in metrics] == ["http.server.duration"]
    (point,) = metrics[0].data.data_points
    assert (point.count, point.sum, point.min, point.max) == (3, 60, 10, 30)


@pytest.mark.parametrize(
    "case", ["not-ours", "exemplars-wanted", "view", "exponential", "negative", "disabled-meter"]
)
def test_anything_the_fast_path_could_change_keeps_the_sdk_path(case: str) -> None:
    kwargs: dict[str, Any] = {"adopt": case != "not-ours"}
    if case == "exemplars-wanted":
        kwargs["exemplar_filter"] = TraceBasedExemplarFilter()
    if case == "view":
        kwargs["views"] = [View(instrument_name="h", name="renamed", attribute_keys={"a"})]
    if case == "exponential":
        kwargs["preferred_aggregation"] = {Histogram: ExponentialBucketHistogramAggregation()}
    provider, reader = _provider(**kwargs)
    instrument = provider.get_meter("s").create_histogram("h")
    histogram = metrics_fast.histogram(instrument)
    if case in ("not-ours", "exemplars-wanted"):
        assert histogram is instrument  # no wrapper at all
    else:
        assert isinstance(histogram, metrics_fast.FastHistogram)
    if case == "disabled-meter":
        histogram.record(1, {"a": "x"})
        provider._set_meter_configurator(  # noqa: SLF001 - the SDK's (private) meter switch
            meter_configurator=lambda scope: _Disabled()
        )
    histogram.record(2, {"a": "x", "b": "y"})
    histogram.record(-1, {"a": "x", "b": "y"})  # the SDK drops it (and says so)
    data = reader.get_metrics_data()
    assert data is not None
    (metric,) = [m for s in data.resource_metrics[0].scope_metrics for m in s.metrics]
    (point,) = metric.data.data_points
    if case == "view":
        assert metric.name == "renamed" and dict(point.attributes) == {"a": "x"}
    elif case == "exponential":
        assert type(metric.data).__name__ == "ExponentialHistogram"
    if case == "disabled-meter":
        assert (point.count, point.sum) == (1, 1)
    else:
        assert (point.count, point.sum) == (1, 2)


class _Disabled:
    is_enabled = False


class _Collected(MetricExporter):
    """A real exporter (the reader's interface) that keeps what it was given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batches: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.batches.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


@pytest.mark.parametrize("final", ["force_flush", "shutdown"])
def test_flush_and_shutdown_export_what_was_recorded(final: str) -> None:
    exporter = _Collected(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter())
    metrics_fast.adopt(provider)
    histogram = metrics_fast.histogram(provider.get_meter("s").create_histogram("h"))
    assert isinstance(histogram, metrics_fast.FastHistogram)
    for value in (1, 2, 3):
        histogram.record(value, {"a": "x"})
    if final == "force_flush":
        assert provider.force_flush(5_000)
        assert len(exporter.batches) == 1
    histogram.record(4, {"a": "x"})
    provider.shutdown()
    points = [
        p
        for batch in exporter.batches
        for s in batch.resource_metrics[0].scope_metrics
        for m in s.metrics
        for p in m.data.data_points
    ]
    expected = [(3, 6), (1, 4)] if final == "force_flush" else [(4, 10)]
    assert [(p.count, p.sum) for p in points] == expected


FORK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from hyperdx.opentelemetry import configure_opentelemetry
    from hyperdx.opentelemetry.server.telemetry import ServerTelemetry

    pipeline = configure_opentelemetry(
        service_name="fork", endpoint="http://127.0.0.1:9", instrument=False
    )
    reader = InMemoryMetricReader(
        preferred_temporality={Histogram: AggregationTemporality[sys.argv[1]]}
    )
    pipeline.meter_provider.add_metric_reader(reader)
    t = ServerTelemetry("scope", "wsgi", meter_provider=pipeline.meter_provider)
    kind = type(t.duration_old).__name__

    def counts():
        data = reader.get_metrics_data()
        if data is None:
            return {}
        return {
            p.attributes["http.route"]: [p.count, p.sum]
            for s in data.resource_metrics[0].scope_metrics
            for m in s.metrics if m.name == "http.server.duration"
            for p in m.data.data_points
        }

    for ms in (1, 2, 3):
        t.record(ms / 1000, {"http.method": "GET"}, None, {"http.route": "/parent"})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        nothing_yet = counts()
        for ms in (10, 20):
            t.record(ms / 1000, {"http.method": "GET"}, None, {"http.route": "/child"})
        t.record(0.005, {"http.method": "GET"}, None, {"http.route": "/parent"})
        os.write(write, json.dumps([nothing_yet, counts()]).encode())
        os._exit(0)
    os.close(write)
    child = json.loads(os.read(read, 65536))
    os.waitpid(pid, 0)
    t.record(0.004, {"http.method": "GET"}, None, {"http.route": "/parent"})
    print(json.dumps({"kind": kind, "child": child, "parent": counts()}))
    os._exit(0)
    """
)


@pytest.mark.parametrize("temporality", ["DELTA", "CUMULATIVE"])
def test_a_forked_worker_reports_only_its_own_measurements(temporality: str) -> None:
    """The distro's pipeline (fast path) with a real fork: the child starts from nothing."""
    out = json.loads(run_script(["-c", FORK_SCRIPT, temporality]))
    assert out["kind"] == "FastHistogram"
    assert out["child"] == [{}, {"/child": [2, 30], "/parent": [1, 5]}]
    assert out["parent"] == {"/parent": [4, 10]}


def test_every_reader_gets_the_sdks_points_including_one_added_later() -> None:
    """Two readers (delta and cumulative) from the start and a third added after records: each
    exports what it exports with the SDK's histogram."""

    def readers_points(adopt: bool) -> list[list[Any]]:
        delta = InMemoryMetricReader(
            preferred_temporality={Histogram: AggregationTemporality.DELTA}
        )
        cumulative = InMemoryMetricReader()
        provider = MeterProvider(
            metric_readers=[delta, cumulative], exemplar_filter=AlwaysOffExemplarFilter()
        )
        if adopt:
            metrics_fast.adopt(provider)
        histogram = metrics_fast.histogram(
            provider.get_meter("s").create_histogram(
                "h", explicit_bucket_boundaries_advisory=[0.5, 1.0, 5.0]
            )
        )
        assert isinstance(histogram, metrics_fast.FastHistogram) is adopt
        exported: list[list[Any]] = []

        def collect(*readers: InMemoryMetricReader) -> None:
            for reader in readers:
                exported.append(
                    [
                        (dict(p.attributes), p.count, p.sum, p.min, p.max, p.bucket_counts)
                        + (p.explicit_bounds,)
                        for p in _points(reader, "h")
                    ]
                )

        for value in (0.1, 0.7, 3.0, 9.5):
            histogram.record(value, {"route": "/a"})
        collect(delta, cumulative)
        late = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
        provider.add_metric_reader(late)
        for value in (0.2, 6.0):
            histogram.record(value, {"route": "/a"})
            histogram.record(value, {"route": "/b"})
        collect(delta, cumulative, late)
        return exported

    fast = readers_points(True)
    assert fast == readers_points(False)
    assert [len(points) for points in fast] == [1, 1, 2, 2, 2]
    assert fast[4][0][1:3] == (2, 0.2 + 6.0)  # the late reader saw only what came after it
