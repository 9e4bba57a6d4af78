"""Normalise one run's spans, metric points and replies, and diff two runs field by field.

Normalisation replaces only values that differ between two runs for reasons unrelated to
the instrumentation, each one named here:

- the server's listening port (each run has its own ephemeral port): an int attribute equal
  to it, and ``:<port>`` inside string values (``net.host.name``, ``http.host``, URLs),
  become ``<server-port>``;
- the client's source port (ephemeral per connection): the values of the peer-port keys in
  ``PEER_PORT_KEYS`` become ``<peer-port>``;
- trace and span ids (random per run): a trace id becomes ``incoming`` when it is the one in
  the request's ``traceparent`` and ``generated`` otherwise; a parent id becomes ``incoming``,
  ``none`` or ``other``;
- ``exception.stacktrace`` (frames include each implementation's own functions): only its
  last line, ``Type: message``, is compared.

Everything else is compared as sent, typed: ``200`` and ``"200"`` differ. The user agent
needs no normalisation: the suite sends the same ``User-Agent`` in both runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from differential.collector import Point, Span
from differential.servers import RunResult
from differential.traffic import INCOMING_PARENT_ID, INCOMING_TRACE_ID, LABELS

SERVER = 2  # SpanKind.SERVER in OTLP
PEER_PORT_KEYS = frozenset(
    {"net.peer.port", "client.port", "net.sock.peer.port", "network.peer.port"}
)
RID_KEYS = ("url.query", "http.target", "http.url", "url.full")
_RID = re.compile(r"(?:^|[?&])rid=([A-Za-z0-9_]+)")
ASGI_INTERNAL_SUFFIXES = (" http send", " http receive")
METRIC_PREFIX = "http.server."


@dataclass(frozen=True)
class Difference:
    app: str
    variant: str
    request: str  # a request label, or "(metrics)"
    field: str
    contrib: Any
    ours: Any

    def line(self) -> str:
        return (
            f"{self.app}/{self.variant}/{self.request}: {self.field}: "
            f"contrib={show(self.contrib)} ours={show(self.ours)}"
        )


class _Missing:
    def __repr__(self) -> str:
        return "<absent>"


MISSING: Any = _Missing()


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:150] + f"...<{len(text)} chars>"


# --- spans ----------------------------------------------------------------------------------


def request_label(span: Span) -> str | None:
    for key in RID_KEYS:
        value = span.attributes.get(key)
        if isinstance(value, str) and (match := _RID.search(value)):
            return match.group(1)
    return None


def server_spans_by_request(spans: Iterable[Span]) -> dict[str, list[Span]]:
    out: dict[str, list[Span]] = {}
    for span in spans:
        if span.kind == SERVER and (label := request_label(span)) is not None:
            out.setdefault(label, []).append(span)
    return out


def children(spans: Iterable[Span], parent: Span) -> list[Span]:
    return [
        s for s in spans if s.parent_span_id == parent.span_id and s.trace_id == parent.trace_id
    ]


def is_asgi_internal(span: Span) -> bool:
    return span.name.endswith(ASGI_INTERNAL_SUFFIXES)


def _value(value: Any, port: int) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value == port:
        return "<server-port>"
    if isinstance(value, str):
        return value.replace(f":{port}", ":<server-port>")
    if isinstance(value, tuple):
        return tuple(_value(v, port) for v in value)
    return value


def normal_attributes(attributes: dict[str, Any], port: int) -> dict[str, Any]:
    out = {}
    for key, value in attributes.items():
        if key in PEER_PORT_KEYS and isinstance(value, int):
            out[key] = "<peer-port>"
        elif key == "exception.stacktrace" and isinstance(value, str):
            lines = [line for line in value.strip().splitlines() if line.strip()]
            out[key] = "<last line> " + (lines[-1] if lines else "")
        else:
            out[key] = _value(value, port)
    return out


def _trace_id(trace_id: str) -> str:
    return "incoming" if trace_id == INCOMING_TRACE_ID else "generated"


def _parent(parent_span_id: str) -> str:
    if not parent_span_id:
        return "none"
    return "incoming" if parent_span_id == INCOMING_PARENT_ID else "other"


def normal_span(span: Span, port: int, all_spans: list[Span]) -> dict[str, Any]:
    """A flat field -> value mapping, so a difference names one field."""
    fields: dict[str, Any] = {
        "name": span.name,
        "kind": span.kind,
        "status.code": span.status_code,
        "status.message": span.status_message,
        "scope.name": span.scope_name,
        "scope.version": span.scope_version,
        "scope.schema_url": span.schema_url,
        "trace_id": _trace_id(span.trace_id),
        "parent": _parent(span.parent_span_id),
        "trace_state": span.trace_state,
        "flags": span.flags,
        "links": span.links,
        "dropped_attributes": span.dropped_attributes,
        "events.count": len(span.events),
        "children": tuple(
            sorted(c.name for c in children(all_spans, span) if not is_asgi_internal(c))
        ),
    }
    for key, value in normal_attributes(span.attributes, port).items():
        fields[f"attr.{key}"] = value
    for i, (name, attributes) in enumerate(span.events):
        fields[f"event[{i}].name"] = name
        for key, value in normal_attributes(attributes, port).items():
            fields[f"event[{i}].attr.{key}"] = value
    return fields


def _typed(value: Any) -> Any:
    """Equality that tells 1 from True and 200 from 200.0 and "200"."""
    if isinstance(value, tuple):
        return tuple(_typed(v) for v in value)
    return (type(value).__name__, value)


def diff_fields(
    left: dict[str, Any], right: dict[str, Any], prefix: str = ""
) -> list[tuple[str, Any, Any]]:
    out = []
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key, MISSING), right.get(key, MISSING)
        if a is MISSING or b is MISSING or _typed(a) != _typed(b):
            out.append((prefix + key, a, b))
    return out


def span_differences(
    contrib: RunResult, ours: RunResult, contrib_spans: list[Span], our_spans: list[Span]
) -> list[Difference]:
    a_by, b_by = server_spans_by_request(contrib_spans), server_spans_by_request(our_spans)
    out: list[Difference] = []
    for label in LABELS:
        a, b = a_by.get(label, []), b_by.get(label, [])

        def add(field: str, x: Any, y: Any, label: str = label) -> None:
            out.append(Difference(contrib.app, contrib.variant, label, field, x, y))

        if len(a) != len(b):
            add("server_spans.count", len(a), len(b))
            continue
        for i, (sa, sb) in enumerate(zip(a, b, strict=True)):
            prefix = f"span[{i}]." if len(a) > 1 else ""
            for field, x, y in diff_fields(
                normal_span(sa, contrib.port, contrib_spans),
                normal_span(sb, ours.port, our_spans),
                prefix,
            ):
                add(field, x, y)
    # Spans no request label reaches (an extra span of ours, a span without the query) would
    # escape the per-request comparison: compare the totals per kind as well.
    for field, x, y in diff_fields(_kinds(contrib_spans), _kinds(our_spans)):
        out.append(Difference(contrib.app, contrib.variant, "(all requests)", field, x, y))
    return out


_KIND_NAMES = ("unspecified", "internal", "server", "client", "producer", "consumer")


def _kinds(spans: list[Span]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for span in spans:
        if not is_asgi_internal(span):
            key = f"spans.{_KIND_NAMES[span.kind]}.count"
            counts[key] = counts.get(key, 0) + 1
    return counts


# --- metrics --------------------------------------------------------------------------------


def metric_summary(points: Iterable[Point], port: int) -> dict[str, Any]:
    """``http.server.*`` metrics as flat fields: per metric its unit, description, type and
    scope; per (metric, attribute set) the final value (histograms: the number of recorded
    requests; up-down counters: the final value). Durations are not compared."""
    fields: dict[str, Any] = {}
    totals: dict[str, float] = {}
    for p in points:
        if not p.name.startswith(METRIC_PREFIX):
            continue
        head = f"metric {p.name}"
        fields[f"{head}.unit"] = p.unit
        fields[f"{head}.description"] = p.description
        fields[f"{head}.type"] = p.kind + (
            "" if p.monotonic is None else (" monotonic" if p.monotonic else " non-monotonic")
        )
        fields[f"{head}.scope"] = p.scope_name
        if p.bounds:
            fields[f"{head}.bounds"] = p.bounds
        attributes = normal_attributes(p.attributes, port)
        key = f"{head} {json.dumps(attributes, sort_keys=True, default=repr)}"
        cumulative = p.temporality == 2
        totals[key] = p.value if cumulative else totals.get(key, 0.0) + p.value
    fields.update(totals)
    return fields


def metric_differences(
    contrib: RunResult, ours: RunResult, contrib_points: list[Point], our_points: list[Point]
) -> list[Difference]:
    return [
        Difference(contrib.app, contrib.variant, "(metrics)", field, x, y)
        for field, x, y in diff_fields(
            metric_summary(contrib_points, contrib.port), metric_summary(our_points, ours.port)
        )
    ]


# --- replies --------------------------------------------------------------------------------


def _reply_fields(result: RunResult, label: str, spans: dict[str, list[Span]]) -> dict[str, Any]:
    reply = result.replies[label]
    fields: dict[str, Any] = {"status": reply.status, "error": reply.error}
    for name, value in reply.headers:
        if name != "date":
            key = f"header.{name}"
            fields[key] = value if key not in fields else f"{fields[key]}, {value}"
    body: Any = reply.body
    if label in _CTX_LABELS and reply.status == 200:
        payload = reply.json()
        # Differs by design (checked by its own test), and so does the body's length.
        payload.pop("server_modules", None)
        fields.pop("header.content-length", None)
        server = spans.get(label, [])
        server_ids = {s.span_id for s in server}
        payload["trace_id"] = (
            "incoming"
            if payload["trace_id"] == INCOMING_TRACE_ID
            else "server span's"
            if any(payload["trace_id"] == s.trace_id for s in server)
            else "invalid"
            if set(payload["trace_id"]) == {"0"}
            else "other"
        )
        payload["span_id"] = (
            "server span's"
            if payload["span_id"] in server_ids
            else "incoming parent"
            if payload["span_id"] == INCOMING_PARENT_ID
            else "invalid"
            if set(payload["span_id"]) == {"0"}
            else "other"
        )
        body = payload
    elif isinstance(body, bytes):
        body = body.decode("utf-8", "replace").replace(f":{result.port}", ":<server-port>")
    fields["body"] = body
    return fields


_CTX_LABELS = frozenset(
    label for label in LABELS if label.startswith(("traceparent", "baggage", "parallel"))
)


def reply_differences(
    contrib: RunResult, ours: RunResult, contrib_spans: list[Span], our_spans: list[Span]
) -> list[Difference]:
    a_by, b_by = server_spans_by_request(contrib_spans), server_spans_by_request(our_spans)
    out = []
    for label in LABELS:
        for field, x, y in diff_fields(
            _reply_fields(contrib, label, a_by), _reply_fields(ours, label, b_by), "reply."
        ):
            out.append(Difference(contrib.app, contrib.variant, label, field, x, y))
    return out
