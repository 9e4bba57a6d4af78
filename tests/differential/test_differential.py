"""Contrib's server instrumentation vs ours, same apps, same requests, field by field.

Each app runs under gunicorn (WSGI) or uvicorn (ASGI) with ``opentelemetry-instrument``,
once with HYPERDX_SERVER_INSTRUMENTATION=contrib and once with the default (ours), in three
environment variants. Every difference must be fixed or listed in known_differences.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from differential.collector import Point, Span
from differential.compare import (
    Difference,
    children,
    is_asgi_internal,
    metric_differences,
    reply_differences,
    server_spans_by_request,
    span_differences,
)
from differential.conftest import Runs
from differential.known_differences import KNOWN_DIFFERENCES, unexplained
from differential.servers import APPS, ASGI_MIDDLEWARE_APPS, RunResult

# Unexplained differences are also appended here, one line each (per process by default, so
# concurrent runs do not mix).
REPORT = Path(os.environ.get("DIFFERENTIAL_REPORT", f"/tmp/differential-report-{os.getpid()}.txt"))


def _pair(
    runs: Runs, app: str, variant: str
) -> tuple[RunResult, RunResult, list[Span], list[Span], list[Point], list[Point]]:
    results = runs.of(app)
    contrib, ours = results[(variant, "contrib")], results[(variant, "ours")]
    col = runs.collected
    return (
        contrib,
        ours,
        col.spans_of(contrib.service),
        col.spans_of(ours.service),
        col.points_of(contrib.service),
        col.points_of(ours.service),
    )


def _check(runs: Runs, kind: str, differences: list[Difference]) -> None:
    runs.observed.extend(differences)
    left = unexplained(differences)
    with REPORT.open("a") as report:
        for d in left:
            report.write(f"{kind}: {d.line()}\n")
    assert not left, (
        f"{len(left)} unexplained {kind} difference(s) (field: contrib, ours; all in {REPORT}):\n"
        + "\n".join(d.line() for d in left)
    )


APP_VARIANTS = [(a, v) for a in APPS for v in APPS[a].variants]


@pytest.mark.parametrize(("app", "variant"), APP_VARIANTS)
def test_server_spans_match(runs: Runs, app: str, variant: str) -> None:
    contrib, ours, a_spans, b_spans, _, _ = _pair(runs, app, variant)
    # The oracle must have produced spans, or the comparison proves nothing.
    assert len(server_spans_by_request(a_spans)) >= 15, contrib.stderr[-2000:]
    runs.compared.add((app, variant, "spans"))
    _check(runs, "span", span_differences(contrib, ours, a_spans, b_spans))


@pytest.mark.parametrize(("app", "variant"), APP_VARIANTS)
def test_server_metrics_match(runs: Runs, app: str, variant: str) -> None:
    contrib, ours, _, _, a_points, b_points = _pair(runs, app, variant)
    assert any(p.name.startswith("http.server.") for p in a_points), contrib.stderr[-2000:]
    runs.compared.add((app, variant, "metrics"))
    _check(runs, "metric", metric_differences(contrib, ours, a_points, b_points))


@pytest.mark.parametrize(("app", "variant"), APP_VARIANTS)
def test_replies_match(runs: Runs, app: str, variant: str) -> None:
    """The app answers the same with either instrumentation (status, headers, body)."""
    contrib, ours, a_spans, b_spans, _, _ = _pair(runs, app, variant)
    runs.compared.add((app, variant, "replies"))
    _check(runs, "reply", reply_differences(contrib, ours, a_spans, b_spans))


def raised_exceptions(stderr: str) -> list[tuple[str, str]]:
    """(last frame, exception line) of every traceback a server printed."""
    found = []
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "Traceback (most recent call last):":
            continue
        frame = ""
        for follow in lines[i + 1 :]:
            if follow.strip().startswith("File "):
                frame = follow.strip()
            elif follow and not follow[0].isspace():
                found.append((frame, follow.strip()))
                break
    return found


@pytest.mark.parametrize("app", list(APPS))
def test_bad_input_never_raises_from_ours(runs: Runs, app: str) -> None:
    """Malformed requests reach the app (or the server's own 400), never as an exception of
    ours: no 5xx but /boom, the only traceback is the app's own, same exit as contrib."""
    for variant in APPS[app].variants:
        ours, contrib = runs.of(app)[(variant, "ours")], runs.of(app)[(variant, "contrib")]
        statuses = {label: r.status for label, r in ours.replies.items()}
        assert all(
            s is not None and (s < 500 or label == "exception") for label, s in statuses.items()
        ), statuses
        assert ours.returncode == contrib.returncode, ours.stderr[-3000:]
        for frame, exception in raised_exceptions(ours.stderr):
            assert "hyperdx/opentelemetry" not in frame, (frame, exception)
            assert exception == "RuntimeError: boom from the app", (frame, exception)


@pytest.mark.parametrize("app", list(APPS))
def test_traceparent_is_honoured_by_both(runs: Runs, app: str) -> None:
    """Pin the oracle's propagation so the 'same as contrib' comparison means something."""
    for mode in ("contrib", "ours"):
        result = runs.of(app)[("default", mode)]
        by = server_spans_by_request(runs.collected.spans_of(result.service))
        [span] = by["traceparent"]
        assert (span.trace_id, span.parent_span_id) == (
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
        ), mode
        assert result.replies["traceparent"].json()["baggage"] == {
            "tenant": "t 1;prop=1",
            "user": "alice",
        }, mode  # the SDK keeps properties
        [invalid] = by["traceparent_invalid"]
        assert (
            invalid.parent_span_id == "" and invalid.trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"
        )
        assert "traceparent_unsampled" not in by, mode  # parent-based sampling drops it
        assert result.replies["baggage_only"].json()["baggage"] == {"user": "bob"}, mode
        without_baggage = runs.of(app)[("http", mode)] if "http" in APPS[app].variants else None
        if without_baggage is not None:  # OTEL_PROPAGATORS=tracecontext there
            assert without_baggage.replies["baggage_only"].json()["baggage"] == {}, mode
            assert without_baggage.replies["traceparent"].json()["baggage"] == {}, mode


@pytest.mark.parametrize("app", list(APPS))
def test_concurrent_requests_keep_their_own_context(runs: Runs, app: str) -> None:
    """Eight requests at once, each with its own traceparent: in both modes each server span
    and the context the app sees belong to that request (no leak between requests)."""
    for mode in ("contrib", "ours"):
        result = runs.of(app)[("default", mode)]
        by = server_spans_by_request(runs.collected.spans_of(result.service))
        for i in range(8):
            label = f"parallel_{i}"
            [span] = by[label]
            assert (span.trace_id, span.parent_span_id) == (f"{i + 1:032x}", f"{i + 1:016x}")
            seen = result.replies[label].json()
            assert (seen["trace_id"], seen["span_id"]) == (span.trace_id, span.span_id), mode


@pytest.mark.parametrize("app", [a for a in APPS if APPS[a].excluded_env])
def test_excluded_urls_give_no_span_in_both(runs: Runs, app: str) -> None:
    """The framework's own *_EXCLUDED_URLS replaces the generic list (contrib's rule)."""
    for mode in ("contrib", "ours"):
        result = runs.of(app)[("dup_capture_excluded", mode)]
        by = server_spans_by_request(runs.collected.spans_of(result.service))
        assert "excluded_specific" not in by, mode
        assert "excluded_generic" in by, mode
        assert result.replies["excluded_specific"].status == 200


@pytest.mark.parametrize("app", sorted(ASGI_MIDDLEWARE_APPS))
def test_asgi_send_receive_spans_only_in_contrib(runs: Runs, app: str) -> None:
    """A documented difference: ours makes one span per request, no http send/receive."""
    contrib, ours, a_spans, b_spans, _, _ = _pair(runs, app, "default")
    [server] = server_spans_by_request(a_spans)["route_param"]
    assert any(is_asgi_internal(c) for c in children(a_spans, server)), "contrib has them"
    assert not [s.name for s in b_spans if is_asgi_internal(s)]


LEAN_MODULE = {
    "flask": "flask",
    "django": "django",
    "django_asgi": "django",
    "wsgi": "wsgi",
    "fastapi": "fastapi",
    "starlette": "starlette",
    "asgi": "asgi",
}


@pytest.mark.parametrize("app", list(APPS))
def test_ours_is_really_the_lean_path(runs: Runs, app: str) -> None:
    """Guard against a trivially green suite: the 'ours' servers ran our request path and the
    'contrib' ones did not (the app reports the loaded hyperdx.opentelemetry.server modules)."""
    module = f"hyperdx.opentelemetry.server.{LEAN_MODULE[app]}"
    for variant in APPS[app].variants:
        ours = runs.of(app)[(variant, "ours")].replies["traceparent"].json()["server_modules"]
        contrib = runs.of(app)[(variant, "contrib")].replies["traceparent"].json()
        assert module in ours, (variant, ours)
        assert module not in contrib["server_modules"], (variant, contrib["server_modules"])


def test_known_differences_are_all_observed(runs: Runs) -> None:
    """Each known difference must show in every (app, variant) it names: an entry broader
    than what is observed, or no longer observed, must be narrowed or leave the list."""
    full = {(a, v, k) for a, v in APP_VARIANTS for k in ("spans", "metrics", "replies")}
    if not full <= runs.compared:
        pytest.skip("only meaningful after the whole suite ran")
    run = set(APP_VARIANTS)
    problems = []
    for known in KNOWN_DIFFERENCES:
        for case in ((a, v) for a in known.apps for v in known.variants):
            seen = [d for d in runs.observed if known.covers(d) and (d.app, d.variant) == case]
            if case not in run:
                problems.append(f"{known.field} names {case}, which the suite does not run")
            elif not seen:
                problems.append(f"{known.field} {known.attributes} not observed in {case}")
    assert not problems, "\n".join(problems)
