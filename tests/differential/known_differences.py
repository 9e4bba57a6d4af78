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

from differential.compare import Difference

ALL_APPS = ("flask", "django", "wsgi", "fastapi", "starlette", "asgi")
ALL_VARIANTS = ("default", "http", "dup_capture_excluded")


@dataclass(frozen=True)
class KnownDifference:
    field: str  # exact field name as the comparison prints it
    apps: tuple[str, ...]
    requests: tuple[str, ...]  # request labels, or ("(metrics)",)
    variants: tuple[str, ...]
    reason: str

    def covers(self, difference: Difference) -> bool:
        return (
            difference.field == self.field
            and difference.app in self.apps
            and difference.request in self.requests
            and difference.variant in self.variants
        )


KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = ()


# Shown in README.md beside the entries above; structural, so not a KnownDifference.
STRUCTURAL_ROWS = (
    "| ASGI `http send` / `http receive` spans | fastapi, starlette, asgi | every request | "
    "Ours makes one SERVER span per request; contrib adds an INTERNAL span per ASGI message. "
    "They carry no information the server span lacks and cost a span each. |",
)


def readme_row(known: KnownDifference) -> str:
    """The README table row of one entry (the README must hold exactly these rows)."""
    return (
        f"| `{known.field}` | {', '.join(known.apps)} | {', '.join(known.requests)} "
        f"({', '.join(known.variants)}) | {known.reason} |"
    )


def readme_rows() -> list[str]:
    return list(STRUCTURAL_ROWS) + [readme_row(k) for k in KNOWN_DIFFERENCES]


def unexplained(differences: list[Difference]) -> list[Difference]:
    return [d for d in differences if not any(k.covers(d) for k in KNOWN_DIFFERENCES)]
