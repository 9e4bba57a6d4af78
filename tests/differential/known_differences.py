"""Every accepted difference between contrib's server instrumentation and ours: ONE list.

The comparison consults this list and nothing else; README.md ("The server request path",
"Differences from contrib") shows the same entries. An entry is narrow: one field, the apps,
requests and variants where it shows, and why it is right (or accepted). A test fails when an
entry no longer matches any observed difference, so the list cannot go stale.

Not listed here because it is structural, not a field: ours emits no ASGI ``http send`` /
``http receive`` INTERNAL spans (one span per request is the point of the lean path); the
suite compares SERVER spans and asserts separately that ours has none of those.
"""

from __future__ import annotations

from dataclasses import dataclass

from differential.compare import MISSING, Difference


@dataclass(frozen=True)
class KnownDifference:
    """One accepted difference. ``field`` is exact, except for a metric's per-attribute-set
    count (``metric <name>``), which ``attributes`` narrows to the sets containing each given
    ``"key": value`` text; ``excess`` pins how many more contrib counts than ours (an absent
    set counts 0), so the entry does not hide any other change of that count."""

    field: str
    apps: tuple[str, ...]
    requests: tuple[str, ...]  # request labels, or ("(metrics)",)
    variants: tuple[str, ...]
    reason: str
    attributes: tuple[str, ...] = ()
    excess: float | None = None
    without: tuple[str, ...] = ()  # texts the attribute set must not contain

    def covers(self, difference: Difference) -> bool:
        if self.attributes or self.without:
            field_matches = (
                difference.field.startswith(self.field + " {")
                and all(text in difference.field for text in self.attributes)
                and not any(text in difference.field for text in self.without)
            )
        else:
            field_matches = difference.field == self.field
        return (
            field_matches
            and difference.app in self.apps
            and difference.request in self.requests
            and difference.variant in self.variants
            and (self.excess is None or _excess(difference) == self.excess)
        )


def _excess(difference: Difference) -> float | None:
    def count(value: object) -> float | None:
        if value is MISSING:
            return 0.0
        return float(value) if isinstance(value, (int, float)) else None

    contrib, ours = count(difference.contrib), count(difference.ours)
    return None if contrib is None or ours is None else contrib - ours


_STALE_CONTENT_LENGTH = (
    "Contrib's ASGI middleware keeps the last Content-Length on the middleware instance "
    "(`self.content_length_header`, shared by all requests), so a response without one (a "
    "streamed body, an unhandled exception) is recorded with the previous response's size. "
    "Ours records a response size only for a response that has a Content-Length."
)
_METRICS = ("(metrics)",)


def _stale_size(app: str, variants: tuple[str, ...], *where: str) -> tuple[KnownDifference, ...]:
    """The stale-Content-Length entries of one app: old-semconv ``http.server.response.size``
    in ``variants`` without ``http``, new ``http.server.response.body.size`` in those with
    it; ``where`` lists (old, new) attribute texts, a leading "!" meaning "absent"."""
    old = tuple(v for v in variants if v != "http")
    new = tuple(v for v in variants if v in ("http", "dup_capture_excluded"))
    entries = []
    for name, chosen, texts in (
        ("metric http.server.response.size", old, where[0::2]),
        ("metric http.server.response.body.size", new, where[1::2]),
    ):
        entries.append(
            KnownDifference(
                name,
                (app,),
                _METRICS,
                chosen,
                _STALE_CONTENT_LENGTH,
                tuple(t for t in texts if not t.startswith("!")),
                1,
                tuple(t[1:] for t in texts if t.startswith("!")),
            )
        )
    return tuple(entries)


_ALL3 = ("default", "http", "dup_capture_excluded")

KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = (
    # FastAPI and Starlette: the streamed /stream response (FastAPI also without the agent).
    *_stale_size(
        "fastapi", (*_ALL3, "in_code"), '"http.target": "/stream"', '"http.route": "/stream"'
    ),
    *_stale_size("starlette", _ALL3, '"http.target": "/stream"', '"http.route": "/stream"'),
    # Starlette: the unhandled exception of /boom.
    *_stale_size("starlette", _ALL3, '"http.target": "/boom"', '"http.route": "/boom"'),
    # The plain ASGI app has no route: /stream falls into the status-200 set (contrib counts
    # one more there), /boom into the set without a status code (absent in ours).
    *_stale_size("asgi", _ALL3, '"http.status_code": 200', '"http.response.status_code": 200'),
    *_stale_size("asgi", _ALL3, '!"http.status_code"', '!"http.response.status_code"'),
)


# Shown in README.md beside the entries above; structural, so not a KnownDifference.
STRUCTURAL_ROWS = (
    "| ASGI `http send` / `http receive` spans | fastapi, starlette, asgi | every request | "
    "Ours makes one SERVER span per request; contrib adds an INTERNAL span per ASGI message. "
    "They carry no information the server span lacks and cost a span each. |",
)


def readme_row(known: KnownDifference, reason: str | None = None) -> str:
    """The README table row of one entry (the README must hold exactly these rows)."""
    field = f"`{known.field}`"
    conditions = [f"`{a}`" for a in known.attributes] + [f"no `{w}`" for w in known.without]
    if conditions:
        field += " count where " + " and ".join(conditions)
    if known.excess is not None:
        field += f" (contrib counts {known.excess:g} more)"
    return (
        f"| {field} | {', '.join(known.apps)} | {', '.join(known.requests)} "
        f"({', '.join(known.variants)}) | {reason or known.reason} |"
    )


def readme_rows() -> list[str]:
    rows = list(STRUCTURAL_ROWS)
    previous = ""
    for known in KNOWN_DIFFERENCES:
        same = known.reason == previous
        rows.append(readme_row(known, "Same reason as the row above." if same else None))
        previous = known.reason
    return rows


def unexplained(differences: list[Difference]) -> list[Difference]:
    return [d for d in differences if not any(k.covers(d) for k in KNOWN_DIFFERENCES)]
