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


def unexplained(differences: list[Difference]) -> list[Difference]:
    return [d for d in differences if not any(k.covers(d) for k in KNOWN_DIFFERENCES)]
