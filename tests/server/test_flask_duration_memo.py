"""The Flask request path memoises the duration attribute sets per (head, status, route) by
identity (``_AppState._record``): a mixed run of requests, each kind repeated so the memo is
hit, gives the duration and active-requests points contrib gives, through the SDK histograms
and through our fast ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from oracle import Sink

from hyperdx.opentelemetry import metrics_fast
from hyperdx.opentelemetry.server import faults
from hyperdx.opentelemetry.server.flask import FlaskInstrumentor

# (method, path, extra environ): routes with and without a rule, statuses 200/404/405/500/
# 201/503/418, two hosts, two schemes, an HTTP/1.0 request and an unknown method.
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/items/1", {}),
    ("GET", "/items/2", {"HTTP_HOST": "other.example:8080"}),
    ("POST", "/items/3", {}),
    ("GET", "/missing", {}),
    ("DELETE", "/items/4", {}),
    ("GET", "/boom", {}),
    ("GET", "/made", {"wsgi.url_scheme": "https"}),
    ("GET", "/busy", {"SERVER_PROTOCOL": "HTTP/1.0"}),
    ("BREW", "/items/5", {}),
    ("GET", "/status/200", {}),  # one rule, three statuses
    ("GET", "/status/418", {}),
    ("GET", "/status/503", {}),
]


def _app() -> Any:
    import flask

    app = flask.Flask("memo")
    app.config["PROPAGATE_EXCEPTIONS"] = False  # /boom answers 500

    @app.route("/items/<int:item_id>", methods=["GET", "POST"])
    def item(item_id: int) -> Any:
        return "ok"

    @app.route("/boom")
    def boom() -> Any:
        raise RuntimeError("boom")

    @app.route("/made")
    def made() -> Any:
        return "made", 201

    @app.route("/busy")
    def busy() -> Any:
        return "busy", 503

    @app.route("/status/<int:code>")
    def status(code: int) -> Any:
        return "as asked", code

    return app


def _run(app: Any, rounds: int) -> None:
    client = app.test_client()
    for _ in range(rounds):
        for method, path, environ in REQUESTS:
            client.open(path, method=method, environ_overrides=dict(environ))


def _points(
    instrument: Callable[[Any, Sink], None], sink: Sink
) -> tuple[Any, dict[tuple[Any, ...], Any]]:
    """The app and its metric points after three rounds of REQUESTS (a histogram point as its
    count: durations differ run to run)."""
    app = _app()
    instrument(app, sink)
    _run(app, 3)
    data: Any = sink.reader.get_metrics_data()
    return app, {
        (metric.name, *sorted(point.attributes.items())): (
            point.count if hasattr(point, "count") else point.value
        )
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }


def _contrib(app: Any, sink: Sink) -> None:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor as Contrib

    Contrib.instrument_app(
        app, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider
    )


def _lean(app: Any, sink: Sink) -> None:
    FlaskInstrumentor.instrument_app(
        app, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider
    )


@pytest.mark.parametrize("fast", [False, True], ids=["sdk-histograms", "fast-histograms"])
def test_memoised_duration_sets_are_contribs(fast: bool) -> None:
    faults.reset()
    _, expected = _points(_contrib, Sink())
    sink = Sink()
    if fast:  # a provider whose histograms take the fast path (no exemplars)
        sink.reader = InMemoryMetricReader()
        sink.meter_provider = MeterProvider(
            metric_readers=[sink.reader], exemplar_filter=AlwaysOffExemplarFilter()
        )
        metrics_fast.adopt(sink.meter_provider)
    app, got = _points(_lean, sink)
    assert got == expected
    statuses = {dict(key[1:]).get("http.status_code") for key in got}
    assert statuses >= {200, 201, 404, 405, 418, 500, 503}
    assert faults.problems() == {}
    # The memo served the repeats: one entry per kind of request, each holding the
    # memoised head's active key.
    memo = app.__dict__["_hyperdx_server"].durations
    assert len(memo) == len(REQUESTS)
    assert all(entry[0] is not None for entry in memo.values())
