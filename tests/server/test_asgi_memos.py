"""The ASGI request path's memos and fast paths give what the general code gives.

* ``plain_headers`` (the headers as one C-built dict) is used only when it equals the decoded
  ``header_map``; anything else (repeated or upper-case or non-ASCII names) takes the general
  path.
* Attributes built from a remembered head equal ``request_attributes`` (the contrib-checked
  general code) for every mode and odd input, and are a fresh dict per request.
* The head, metric-attribute and span-name memos never mix routes, methods or statuses and
  stay bounded; a broken or valid ``traceparent``, a non-ASCII path, an excluded URL and a
  failing hook behave as before.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from _inprocess import (
    HEADERS,
    MODE_IDS,
    MODES,
    SCOPE,
    active_requests,
    asgi_scope,
    call_asgi,
    instrumented,
    metric_points,
    server_spans,
)
from oracle import Sink

from hyperdx.opentelemetry.server import asgi, faults, semconv
from hyperdx.opentelemetry.server.fastapi import FastAPIInstrumentor


def _decoded(plain: dict[bytes, Any]) -> dict[str, list[str]]:
    return {asgi.decode(k): [asgi.decode(v)] for k, v in plain.items()}


@pytest.mark.parametrize(
    "raw,plain",
    [
        (HEADERS, True),
        ([[b"host", b"h"], [b"x-a", b"1"]], True),  # lists as pairs (ASGI allows them)
        ((), True),
        (None, True),
        ([(b"host", b"a"), (b"host", b"b")], False),  # repeated: values to keep in order
        ([(b"Host", b"a")], False),  # upper case: to lower-case as contrib does
        ([(b"caf\xc3\xa9", b"1")], False),  # non-ASCII name
        ([("host", "h")], False),  # str names
        ([(b"1-2", b"1")], False),  # no cased letter: decided by the general path
        ([(b"broken",), (b"host", b"h")], False),
        ([(b"host", b"\xff\xfe")], True),  # a non-UTF-8 value: decoded as contrib when read
        (iter(HEADERS), False),  # not a list: never consumed here
    ],
)
def test_plain_headers_only_when_equal_to_the_header_map(raw: Any, plain: bool) -> None:
    found = asgi.plain_headers(raw)
    assert (found is not None) == plain
    if found is not None:
        assert _decoded(found) == asgi.header_map(raw)
        getter = asgi.plain_header_getter
        mapped = asgi.header_map(raw)
        for key in ["host", "Host", "user-agent", "traceparent", "x-a"]:
            assert getter.get(found, key) == asgi.header_getter.get(mapped, key)
        assert getter.keys(found) == asgi.header_getter.keys(mapped)


class _Path(str):
    """A str subclass: stored as it is, but not a plain ``str`` (fast_span checks types)."""


SCOPES: list[dict[str, Any]] = [
    {},
    {"path": "/caf\u00e9/\u2603"},  # non-ASCII path
    {"query_string": b"q=\xff\xfe"},  # not UTF-8
    {"query_string": b""},
    {"path": ""},
    {"method": "brew"},
    {"method": "PURGE "},
    {"http_version": None},
    {"http_version": "2"},
    {"server": None},
    {"server": ("h", 80)},
    {"server": ["unhashable", 81]},
    {"client": None},
    {"client": ("", "x")},
    {"client": ("1.2.3.4", "5")},
    {"scheme": "https"},
    {"path": "/a@b?c"},  # redacted as a URL with credentials and a query would be
    {"client": (b"1.2.3.4", 5)},  # a bytes client address: not plain
    {"client": (7, 5)},  # an int one: plain
    {"path": _Path("/sub")},  # a str subclass: not plain
    {"query_string": "q=1"},  # already decoded
]
HEADER_VARIANTS: list[list[Any]] = [
    HEADERS,
    [],
    [(b"user-agent", b"Googlebot/2.1")],
    [(b"user-agent", b"")],
    [(b"user-agent", b"\xff\xfe agent"), (b"host", b"example.test")],
    [(b"host", b"user:pw@example.test")],
]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_attributes_from_a_head_equal_the_general_ones(mode: semconv.Mode) -> None:
    heads: dict[tuple[Any, ...], asgi.Head] = {}
    compared = 0
    for variant, raw in itertools.product(SCOPES, HEADER_VARIANTS):
        scope = {**SCOPE, **variant}
        plain = asgi.plain_headers(raw)
        assert plain is not None
        expected = asgi.request_attributes(scope, asgi.header_map(raw), mode)
        head = asgi.head_of(heads, scope, plain.get(b"host"), mode)
        if head is None:  # an unhashable server: the general path serves it
            assert isinstance(scope["server"], list)
            continue
        for _ in range(2):  # the memo's first answer and a remembered one
            attrs, str_int = asgi.request_attributes_plain(head, scope, plain, mode)
            assert attrs == expected
            # Vouched plain exactly when every value is a str or an int (fast_span's rule).
            assert str_int == all(type(v) in (str, int) for v in attrs.values()), attrs
            assert asgi.request_attributes_from(head, scope, plain, mode) == expected
            assert head.active == semconv.active_attrs(expected, mode, asgi.ACTIVE_ORDER)
            attrs["mutated"] = True  # a copy: the next request does not see it
            head = asgi.head_of(heads, scope, plain.get(b"host"), mode)
            assert head is not None
        compared += 1
    assert compared >= 90
    # Both answers occur (so the comparison above decides something).
    vouched = {
        asgi.request_attributes_plain(h, {**SCOPE, **v}, asgi.plain_headers(HEADERS) or {}, mode)[1]
        for v in SCOPES
        if (h := asgi.head_of(heads, {**SCOPE, **v}, b"example.test", mode)) is not None
    }
    assert vouched == {True, False}


def test_head_memo_is_bounded_and_keeps_answering() -> None:
    mode = MODES[0]
    heads: dict[tuple[Any, ...], asgi.Head] = {}
    for i in range(asgi._MAX_HEADS + 50):
        host = f"h{i}.example".encode()
        head = asgi.head_of(heads, SCOPE, host, mode)
        assert head is not None
        assert head.attrs["http.server_name"] == f"h{i}.example"
        assert head.url_prefix == f"http://h{i}.example"
    assert len(heads) == asgi._MAX_HEADS
    assert asgi.head_of(heads, {**SCOPE, "scheme": None}, None, mode) is None  # general path


# --- through a real FastAPI app --------------------------------------------------------------


@pytest.fixture
def lean_fastapi() -> Iterator[Sink]:
    faults.reset()
    with instrumented(FastAPIInstrumentor, Sink()) as sink:
        yield sink


def _app() -> Any:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> Any:
        return PlainTextResponse("item", status_code=200 if item_id else 404)

    @app.post("/items/{item_id}")
    async def create(item_id: int) -> Any:
        return PlainTextResponse("created", status_code=201)

    @app.get("/users/{name}")
    async def user(name: str) -> Any:
        if name == "boom":
            raise RuntimeError("boom")
        return PlainTextResponse(name)

    @app.get("/caf\u00e9")
    async def cafe() -> Any:
        return PlainTextResponse("cafe")

    return app


def _call(app: Any, method: str, path: str, headers: list[Any] | None = None) -> list[Any]:
    """The app's own error (re-raised after its 500) does not reach the test."""
    scope = asgi_scope(method, path, HEADERS if headers is None else headers)
    return call_asgi(app, scope, app_errors=(RuntimeError,))


def test_memos_do_not_mix_routes_methods_or_statuses(lean_fastapi: Sink) -> None:
    app = _app()
    requests = [
        ("GET", "/items/1", "GET /items/{item_id}", 200),
        ("POST", "/items/1", "POST /items/{item_id}", 201),
        ("GET", "/items/0", "GET /items/{item_id}", 404),
        ("GET", "/users/ann", "GET /users/{name}", 200),
        ("DELETE", "/users/ann", "DELETE /users/{name}", 405),  # a partial match
        ("GET", "/users/boom", "GET /users/{name}", 500),  # raised, then answered 500
        ("GET", "/nowhere", "GET", 404),
        ("GET", "/caf\u00e9", "GET /caf\u00e9", 200),  # a non-ASCII path and route
    ]
    for _ in range(3):  # first requests fill the memos, later ones read them
        for method, path, _, _ in requests:
            _call(app, method, path)
    spans = server_spans(lean_fastapi)
    assert len(spans) == 3 * len(requests)
    for i, span in enumerate(spans):
        method, path, name, status = requests[i % len(requests)]
        attrs = span["attributes"]
        assert span["name"] == name
        assert attrs["http.method"] == method
        assert attrs["http.target"] == path
        assert attrs["http.url"] == "http://127.0.0.1:8000" + path
        assert attrs.get("http.status_code") == status
        assert attrs.get("http.route") == (name.split(" ", 1)[1] if " " in name else None)
    durations = lean_fastapi.metric_dicts()["http.server.duration"][2]
    counted = {
        (a["http.method"], a.get("http.target"), a.get("http.status_code")): n
        for a, n in ((dict(items), n) for items, n in durations)
    }
    assert counted == {
        ("GET", "/items/{item_id}", 200): 3,
        ("POST", "/items/{item_id}", 201): 3,
        ("GET", "/items/{item_id}", 404): 3,
        ("GET", "/users/{name}", 200): 3,
        ("DELETE", "/users/{name}", 405): 3,  # a partial match sets the route too
        ("GET", "/users/{name}", 500): 3,
        ("GET", None, 404): 3,
        ("GET", "/caf\u00e9", 200): 3,
    }
    assert faults.problems() == {}


def test_metric_attribute_memo_is_bounded(lean_fastapi: Sink) -> None:
    app = _app()
    for i in range(asgi._MAX_METRIC_SETS + 10):
        _call(app, "GET", f"/users/u{i}")
        _call(app, "GET", f"/nowhere/{i}")
    middleware = _middleware(app)
    assert 0 < sum(len(h.metrics) for h in middleware.heads.values()) <= asgi._MAX_METRIC_SETS
    assert len(server_spans(lean_fastapi)) == 2 * (asgi._MAX_METRIC_SETS + 10)


def _middleware(app: Any) -> asgi.OpenTelemetryASGIMiddleware:
    layer = app.middleware_stack
    while not isinstance(layer, asgi.OpenTelemetryASGIMiddleware):
        layer = layer.app
    return layer


@pytest.mark.parametrize("name", [b"traceparent", b"Traceparent"], ids=["plain", "general"])
def test_traceparent_valid_or_broken_on_both_header_paths(lean_fastapi: Sink, name: bytes) -> None:
    app = _app()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    valid = f"00-{trace_id}-00f067aa0ba902b7-01".encode()
    for value in [valid, b"00-zz-broken", b"\xff\xfe", b""]:
        sent = _call(app, "GET", "/items/3", [*HEADERS, (name, value)])
        assert sent[0]["status"] == 200
    spans = server_spans(lean_fastapi)
    assert spans[0]["trace_id"] == trace_id and spans[0]["parent"] == "00f067aa0ba902b7"
    assert [s["parent"] for s in spans[1:]] == [None, None, None]
    assert faults.problems() == {}


def test_excluded_urls_skip_on_both_header_paths() -> None:
    sink = Sink()
    with instrumented(FastAPIInstrumentor, sink, excluded_urls="users/.*"):
        app = _app()
        for headers in [HEADERS, [(b"Host", b"127.0.0.1:8000")]]:
            assert _call(app, "GET", "/users/ann", headers)[0]["status"] == 200
            assert _call(app, "GET", "/items/1", headers)[0]["status"] == 200
    assert [s["name"] for s in server_spans(sink)] == ["GET /items/{item_id}"] * 2


def test_a_failing_hook_is_recorded_never_raised() -> None:
    sink = Sink()

    def broken(span: Any, *args: Any) -> None:
        raise ValueError("hook bug")

    with instrumented(
        FastAPIInstrumentor,
        sink,
        server_request_hook=broken,
        client_request_hook=broken,
        client_response_hook=broken,
    ):
        app = _app()
        sent = _call(app, "GET", "/items/2")
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    [span] = server_spans(sink)
    assert span["attributes"]["http.status_code"] == 200
    assert [e[:3] for e in span["events"]] == [("exception", "ValueError", "hook bug")] * 3


@pytest.mark.parametrize("how", ["http", "all", "plain-key"])
def test_suppressed_instrumentation_is_not_traced(lean_fastapi: Sink, how: str) -> None:
    from opentelemetry import context
    from opentelemetry.instrumentation.utils import (
        suppress_http_instrumentation,
        suppress_instrumentation,
    )

    app = _app()
    if how == "http":
        with suppress_http_instrumentation():
            sent = _call_in_context(app)
    elif how == "all":
        with suppress_instrumentation():
            sent = _call_in_context(app)
    else:
        token = context.attach(context.set_value("suppress_instrumentation", True))
        try:
            sent = _call_in_context(app)
        finally:
            context.detach(token)
    assert sent[0]["status"] == 200
    assert server_spans(lean_fastapi) == []
    _call(app, "GET", "/items/1")  # outside the suppression: traced again
    assert [s["name"] for s in server_spans(lean_fastapi)] == ["GET /items/{item_id}"]


def _call_in_context(app: Any) -> list[Any]:
    """One request on a loop that runs in the caller's context (asyncio.run copies it too)."""
    return _call(app, "GET", "/items/1")


def test_active_count_cells_are_the_keys_counts_and_overflow_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    active, sink = active_requests(monkeypatch, 2)
    get, post, put = [(("http.method", m),) for m in ("GET", "POST", "PUT")]
    cell = active.cell(get)
    assert active.cell(tuple(get)) is cell  # an equal key: the same count
    active.add_to(cell, 1)
    active.add(1, get)  # the key's own path counts into the same cell
    active.add_to(active.cell(post), 1)
    active.add_to(active.cell(put), 5)  # past the limit: the overflow count
    active.add(-1, put)
    assert metric_points(sink) == {get: 2, post: 1, (("otel.metric.overflow", True),): 4}


def test_active_requests_return_to_zero_after_requests(lean_fastapi: Sink) -> None:
    app = _app()
    for path in ["/items/1", "/users/ann", "/users/boom", "/items/1"]:
        _call(app, "GET", path)
    metric = lean_fastapi.metric_dicts()["http.server.active_requests"]
    assert [value for _, value in metric[2]] == [0]
    assert dict(metric[2][0][0])["http.method"] == "GET"
