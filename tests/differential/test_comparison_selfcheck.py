"""The comparison can fail: perturb one field of a real contrib run and see it reported.

Uses the Flask run the differential suite makes anyway (cached per session), so it costs no
extra server start when the whole suite runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from differential.collector import Point, Span
from differential.compare import (
    MISSING,
    Difference,
    metric_differences,
    reply_differences,
    server_spans_by_request,
    span_differences,
)
from differential.conftest import Runs
from differential.known_differences import KnownDifference, readme_rows
from differential.servers import RunResult
from differential.traffic import Reply


def _flask_contrib(runs: Runs) -> tuple[RunResult, list[Span], list[Point]]:
    result = runs.of("flask")[("default", "contrib")]
    return result, runs.collected.spans_of(result.service), runs.collected.points_of(result.service)


def _perturb(spans: list[Span], label: str, **changes: object) -> list[Span]:
    target = server_spans_by_request(spans)[label][0]
    out = []
    for span in spans:
        if span is target:
            attributes = dict(span.attributes)
            attributes.update(changes.pop("attributes", {}))  # type: ignore[call-overload]
            span = dataclasses.replace(span, attributes=attributes, **changes)
        out.append(span)
    return out


def test_identical_runs_have_no_differences(runs: Runs) -> None:
    result, spans, points = _flask_contrib(runs)
    assert span_differences(result, result, spans, spans) == []
    assert metric_differences(result, result, points, points) == []
    assert reply_differences(result, result, spans, spans) == []


def test_a_changed_attribute_value_and_type_are_reported(runs: Runs) -> None:
    result, spans, _ = _flask_contrib(runs)
    route = server_spans_by_request(spans)["route_param"][0].attributes["http.route"]
    perturbed = _perturb(spans, "route_param", attributes={"http.route": "/items/42"})
    perturbed = _perturb(perturbed, "not_found", attributes={"http.status_code": "404"})
    found = [
        (d.request, d.field, d.contrib, d.ours)
        for d in span_differences(result, result, spans, perturbed)
    ]
    assert found == [
        ("route_param", "attr.http.route", route, "/items/42"),
        ("not_found", "attr.http.status_code", 404, "404"),
    ]


def test_a_missing_event_status_and_span_are_reported(runs: Runs) -> None:
    result, spans, _ = _flask_contrib(runs)
    perturbed = _perturb(spans, "exception", events=[], status_message="")
    perturbed = [s for s in perturbed if s is not server_spans_by_request(spans)["streamed"][0]]
    found = {(d.request, d.field) for d in span_differences(result, result, spans, perturbed)}
    assert ("exception", "events.count") in found
    assert ("exception", "event[0].attr.exception.message") in found
    assert ("exception", "status.message") in found
    assert ("streamed", "server_spans.count") in found


def test_a_changed_metric_attribute_and_reply_are_reported(runs: Runs) -> None:
    result, spans, points = _flask_contrib(runs)
    target = next(p for p in points if p.name == "http.server.duration")
    changed: list[Point] = [
        dataclasses.replace(p, attributes={**p.attributes, "http.method": "_OTHER"})
        if p is target
        else p
        for p in points
    ]
    assert metric_differences(result, result, points, changed)
    other = dataclasses.replace(
        result, replies={**result.replies, "head": Reply(status=500, headers=[], body=b"")}
    )
    fields = {(d.request, d.field) for d in reply_differences(result, other, spans, spans)}
    assert ("head", "reply.status") in fields


def test_a_known_difference_covers_only_its_own_case(runs: Runs) -> None:
    result, spans, _ = _flask_contrib(runs)
    perturbed = _perturb(spans, "route_param", attributes={"http.flavor": "2"})
    perturbed = _perturb(perturbed, "head", attributes={"http.flavor": "2"})
    differences = span_differences(result, result, spans, perturbed)
    known = KnownDifference("attr.http.flavor", ("flask",), ("route_param",), ("default",), "x")
    assert [d.request for d in differences if not known.covers(d)] == ["head"]


def test_readme_table_is_the_known_differences_list() -> None:
    """One list: the README's "Differences from contrib" table has exactly its rows."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Differences from contrib", 1)[1].split("\n#", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert table[1:] == readme_rows(), "README.md table and known_differences.py disagree"


def test_a_metric_known_difference_needs_its_attributes_and_excess() -> None:
    known = KnownDifference("metric m", ("asgi",), ("(metrics)",), ("http",), "x", ('"a": 1',), 1)

    def diff(field: str, contrib: object, ours: object) -> Difference:
        return Difference("asgi", "http", "(metrics)", field, contrib, ours)

    assert known.covers(diff('metric m {"a": 1, "b": 2}', 2.0, 1.0))
    assert known.covers(diff('metric m {"a": 1}', 1.0, MISSING))  # absent counts 0
    assert not known.covers(diff('metric m {"a": 1, "b": 2}', 3.0, 1.0))  # other excess
    assert not known.covers(diff('metric m {"a": 2}', 2.0, 1.0))  # other attribute set
    assert not known.covers(diff('metric m2 {"a": 1}', 2.0, 1.0))  # other metric
    assert not known.covers(diff("metric m.unit", 2.0, 1.0))
    narrower = dataclasses.replace(known, without=('"b"',))
    assert narrower.covers(diff('metric m {"a": 1}', 2.0, 1.0))
    assert not narrower.covers(diff('metric m {"a": 1, "b": 2}', 2.0, 1.0))
