"""`fast_span` produces exactly what the SDK's own `Tracer.start_span` / `set_attribute` would,
for every sampler, parent and attribute shape, and switches itself off if the SDK changes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from _tracing import CountingIds, Ended
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState

from hyperdx.opentelemetry import fast_span
from hyperdx.opentelemetry.export._spans import encode_span


def test_installed_sdk_is_the_verified_one() -> None:
    """Fails when an SDK release changes a function the fast paths mirror: re-read it, re-check
    fast_span against it, then record the new fingerprints in `fast_span.VERIFIED`."""
    changed = {
        name
        for name, value in fast_span.fingerprints().items()
        if fast_span.VERIFIED.get(name) != value
    }
    assert not changed, f"opentelemetry-sdk changed {sorted(changed)}: re-verify fast_span"
    assert fast_span.ENABLED


class _AddsAttributes(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE, {"sampler.rule": "x", "n": 1})

    def get_description(self) -> str:
        return "adds"


class _Reorders(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        attributes = args[4] if len(args) > 4 else kwargs.get("attributes")
        items = list((attributes or {}).items())[::-1]
        return SamplingResult(Decision.RECORD_ONLY, dict(items))

    def get_description(self) -> str:
        return "reorders"


class _Seen(Ended):
    """What a processor's on_start sees (the attributes must already be there)."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[Any] = []

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self.started.append((list(span.attributes.items()), parent_context))


def _remote(sampled: bool, state: TraceState | None = None) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    ctx = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=flags, trace_state=state)
    return trace.set_span_in_context(NonRecordingSpan(ctx), Context())


def _local(sampled: bool) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED | (TraceFlags.RANDOM_TRACE_ID if sampled else 0))
    ctx = SpanContext(0x123, 0x456, is_remote=False, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(ctx), Context())


PLAIN = {"http.method": "GET", "http.target": "/a?b=1", "net.host.port": 8000, "ok": True, "f": 1.5}
ATTRIBUTES: dict[str, Mapping[Any, Any] | None] = {
    "plain": PLAIN,
    "empty": {},
    "none": None,
    "sequence": {**PLAIN, "list": ["a", "b"]},
    "none-value": {"a": None, "b": "x"},
    "object": {"a": object(), "b": "x"},
    "empty-key": {"": "x", "b": "y"},
    "int-key": {1: "x", "b": "y"},
    "str-subclass": {"a": type("S", (str,), {})("x")},
}
SAMPLERS: dict[str, Sampler] = {
    "default": DEFAULT_ON,
    "always-on": ALWAYS_ON,
    "always-off": ALWAYS_OFF,
    "default-off": DEFAULT_OFF,
    "ratio": ParentBased(TraceIdRatioBased(0.5)),
    "adds": _AddsAttributes(),
    "reorders": _Reorders(),
}
PARENTS = {
    "none": lambda: None,
    "empty": Context,
    "remote-sampled": lambda: _remote(True, TraceState([("k", "v")])),
    "remote-unsampled": lambda: _remote(False),
    "local-sampled": lambda: _local(True),
}
LIMITS = {
    "default": SpanLimits(),
    "three": SpanLimits(max_span_attributes=3),
    "short": SpanLimits(max_span_attribute_length=3),
    "zero": SpanLimits(max_span_attributes=0),
}


def _run(start: Any, sampler: Sampler, limits: SpanLimits, parent: Any, attrs: Any) -> Any:
    ids = CountingIds(7, random=lambda n: n % 2 == 0)  # both flag values
    seen = _Seen()
    provider = TracerProvider(sampler=sampler, id_generator=ids, span_limits=limits)
    provider.add_span_processor(seen)
    tracer = provider.get_tracer("t", "1")
    span = start(tracer, parent(), attrs)
    recording = span.is_recording()
    if recording:
        span.set_attribute("late", "x")  # a new key (one store, no attribute lock)
        span.set_attribute("http.method", "POST")  # an existing key moves to the end
        span.set_attribute("late", 2)
        span.end(end_time=20)
    ended = seen.ended[0] if seen.ended else None
    return (
        type(span).__name__,
        span.get_span_context(),
        recording,
        [(items, _parent_of(ctx)) for items, ctx in seen.started],
        None if ended is None else _fields(ended),
    )


def _parent_of(ctx: Context | None) -> Any:
    return None if ctx is None else (len(ctx), trace.get_current_span(ctx).get_span_context())


def _fields(span: Any) -> tuple[Any, ...]:
    return (
        span.name,
        span.context,
        span.parent,
        span.kind,
        list(span.attributes.items()),
        span.dropped_attributes,
        span.start_time,
        span.end_time,
        span.instrumentation_scope,
        encode_span(span),
    )


def _sdk(tracer: Any, parent: Any, attrs: Any) -> Any:
    return tracer.start_span("GET /a", parent, SpanKind.SERVER, attrs, start_time=10)


def _fast(tracer: Any, parent: Any, attrs: Any) -> Any:
    return fast_span.start_span(tracer, "GET /a", parent, SpanKind.SERVER, attrs, 10)


def _cases() -> Iterator[Any]:
    for sampler in SAMPLERS:
        for parent in PARENTS:
            yield pytest.param(sampler, "default", parent, "plain", id=f"{sampler}-{parent}")
    for limits in LIMITS:
        for attrs in ATTRIBUTES:
            yield pytest.param("default", limits, "empty", attrs, id=f"{limits}-{attrs}")


@pytest.mark.parametrize(("sampler", "limits", "parent", "attrs"), list(_cases()))
def test_same_span_as_the_sdk(sampler: str, limits: str, parent: str, attrs: str) -> None:
    args = (SAMPLERS[sampler], LIMITS[limits], PARENTS[parent], ATTRIBUTES[attrs])
    assert _run(_fast, *args) == _run(_sdk, *args)


def test_plain_attributes_skip_the_sdk_cleaning(monkeypatch: pytest.MonkeyPatch) -> None:
    import opentelemetry.attributes as sdk_attributes

    cleaned: list[Any] = []
    original = sdk_attributes._clean_attribute_value

    def counting(value: Any, limit: Any) -> Any:
        cleaned.append(value)
        return original(value, limit)

    tracer = TracerProvider().get_tracer("t")
    monkeypatch.setattr(sdk_attributes, "_clean_attribute_value", counting)
    span = fast_span.start_span(tracer, "GET", Context(), SpanKind.SERVER, PLAIN)
    assert dict(span.attributes or {}) == PLAIN and cleaned == []
    fast_span.start_span(tracer, "GET", Context(), SpanKind.SERVER, {"l": [1]})
    assert cleaned  # anything else is still the SDK's to clean


def test_other_tracers_and_a_changed_sdk_take_the_tracers_own_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    class Custom(trace.NoOpTracer):
        def start_span(self, name: str, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return super().start_span(name, *args, **kwargs)

    fast_span.start_span(Custom(), "custom", None, SpanKind.SERVER, PLAIN)
    assert calls == ["custom"]

    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    monkeypatch.setattr(type(tracer), "start_span", _spy(type(tracer).start_span, calls))
    fast_span.start_span(tracer, "fast", None, SpanKind.SERVER, PLAIN)
    assert calls == ["custom"]  # the SDK tracer is bypassed...
    monkeypatch.setattr(fast_span, "ENABLED", False)
    fast_span.start_span(tracer, "off", None, SpanKind.SERVER, PLAIN)
    assert calls == ["custom", "off"]  # ...unless the SDK is not the verified one


def _spy(method: Any, calls: list[str]) -> Any:
    def spy(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return method(self, name, *args, **kwargs)

    return spy


def _both(limits: SpanLimits, start: Mapping[str, Any], key: str, value: Any) -> list[Any]:
    out = []
    for fast in (False, True):
        tracer = TracerProvider(span_limits=limits).get_tracer("t")
        span: Any = tracer.start_span("s", attributes=start)
        if fast:
            fast_span.set_str_at_start(span, key, value)
        else:
            span.set_attribute(key, value)
        out.append((list(span.attributes.items()), span.dropped_attributes))
    return out


@pytest.mark.parametrize(
    ("limits", "key", "value"),
    [
        (SpanLimits(), "b", "new"),  # an existing key moves to the end, as the SDK re-inserts
        (SpanLimits(), "c", "added"),
        (SpanLimits(max_span_attributes=2), "c", "drops the oldest"),
        (SpanLimits(max_span_attributes=2), "a", "replaces in a full mapping"),
        (SpanLimits(max_span_attribute_length=4), "c", "truncated"),
        (SpanLimits(), "", "dropped"),
    ],
)
def test_set_str_at_start_stores_what_set_attribute_stores(
    limits: SpanLimits, key: str, value: str
) -> None:
    sdk, fast = _both(limits, {"a": "1", "b": "2"}, key, value)
    assert fast == sdk


def test_set_str_at_start_on_an_ended_span_is_ignored_like_the_sdk() -> None:
    span: Any = TracerProvider().get_tracer("t").start_span("s", attributes={"a": "1"})
    span.end()
    fast_span.set_str_at_start(span, "b", "late")
    assert dict(span.attributes) == {"a": "1"}


def test_start_span_attaches_nothing() -> None:
    before = context_api.get_current()
    fast_span.start_span(TracerProvider().get_tracer("t"), "s", None, SpanKind.SERVER, PLAIN)
    assert context_api.get_current() is before


EVENT_LIMITS = {
    "default": SpanLimits(),
    "one": SpanLimits(max_events=1, max_links=1),
    "zero": SpanLimits(max_events=0, max_links=0),
}


@pytest.mark.parametrize("limits", list(EVENT_LIMITS.values()), ids=list(EVENT_LIMITS))
def test_events_and_links_land_as_on_the_sdks_span(limits: SpanLimits) -> None:
    """Fast spans start on shared empty event/link lists and get their own at their first
    event or link: what they hold and export is the SDK span's, and the shared lists stay
    empty (an ended span appends nothing)."""

    def run(start: Any) -> tuple[list[Any], list[Any]]:
        ended = Ended()
        provider = TracerProvider(id_generator=CountingIds(7), span_limits=limits)
        provider.add_span_processor(ended)
        tracer = provider.get_tracer("t", "1")
        quiet = start(tracer, Context(), PLAIN)
        busy = start(tracer, Context(), PLAIN)
        busy.add_event("e1", {"k": 1}, timestamp=11)
        busy.add_link(SpanContext(0xA, 0xB, False), {"l": "x"})
        busy.record_exception(ValueError("v"), timestamp=12)
        busy.add_event("e2", timestamp=13)
        quiet.end(end_time=20)
        busy.end(end_time=20)
        busy.add_event("late", timestamp=21)  # ignored by the SDK's span too
        quiet.add_link(SpanContext(0xC, 0xD, False))
        last = start(tracer, Context(), PLAIN)
        last.end(end_time=20)
        rows = [
            (
                [(e.name, dict(e.attributes or {}), e.timestamp) for e in s.events],
                s.dropped_events,
                [(link.context, dict(link.attributes or {})) for link in s.links],
                s.dropped_links,
                encode_span(s),
            )
            for s in ended.ended
        ]
        return rows, [quiet, busy, last]

    fast_rows, (quiet, busy, last) = run(_fast)
    sdk_rows, _ = run(_sdk)
    assert fast_rows == sdk_rows
    kept = 3 if limits.max_events is None else min(3, limits.max_events)
    assert len(fast_rows[1][0]) == kept  # the busy span's events
    assert quiet._events is last._events and quiet._links is last._links  # shared...
    assert busy._events is not quiet._events and busy._links is not quiet._links  # ...or owned
    assert all(not shared._dq and not shared.dropped for shared in fast_span._EMPTY_LISTS.values())
