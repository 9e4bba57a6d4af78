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
        if self.attributes:
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
_OLD = ("default", "dup_capture_excluded", "in_code")
_NEW = ("http", "dup_capture_excluded")
_METRICS = ("(metrics)",)

KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = (
    KnownDifference(
        "metric http.server.response.size",
        ("fastapi", "starlette"),
        _METRICS,
        _OLD,
        _STALE_CONTENT_LENGTH,
        ('"http.target": "/stream"',),
        1,
    ),
    KnownDifference(
        "metric http.server.response.body.size",
        ("fastapi", "starlette"),
        _METRICS,
        _NEW,
        _STALE_CONTENT_LENGTH,
        ('"http.route": "/stream"',),
        1,
    ),
    KnownDifference(
        "metric http.server.response.size",
        ("starlette",),
        _METRICS,
        _OLD,
        _STALE_CONTENT_LENGTH,
        ('"http.target": "/boom"',),
        1,
    ),
    KnownDifference(
        "metric http.server.response.body.size",
        ("starlette",),
        _METRICS,
        _NEW,
        _STALE_CONTENT_LENGTH,
        ('"http.route": "/boom"',),
        1,
    ),
    # The plain ASGI app has no route: /stream falls into the status-200 set (contrib counts
    # one more there), /boom into the set without a status code (absent in ours).
    KnownDifference(
        "metric http.server.response.size",
        ("asgi",),
        _METRICS,
        _OLD,
        _STALE_CONTENT_LENGTH,
        ('"http.status_code": 200',),
        1,
    ),
    KnownDifference(
        "metric http.server.response.body.size",
        ("asgi",),
        _METRICS,
        _NEW,
        _STALE_CONTENT_LENGTH,
        ('"http.response.status_code": 200',),
        1,
    ),
    KnownDifference(
        "metric http.server.response.size",
        ("asgi",),
        _METRICS,
        _OLD,
        _STALE_CONTENT_LENGTH,
        ('"http.method": "GET"',),
        1,
        ('"http.status_code"',),
    ),
    KnownDifference(
        "metric http.server.response.body.size",
        ("asgi",),
        _METRICS,
        _NEW,
        _STALE_CONTENT_LENGTH,
        ('"http.request.method": "GET"',),
        1,
        ('"http.response.status_code"',),
    ),
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
    if known.attributes:
        field += " count where " + " and ".join(f"`{a}`" for a in known.attributes)
        field += "".join(f" and no `{w}`" for w in known.without)
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
