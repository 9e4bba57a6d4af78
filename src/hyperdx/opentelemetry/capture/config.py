"""Configuration of advanced network capture.

Built from the one settings object (`hyperdx.opentelemetry.options`, which parses the
HYPERDX_CAPTURE_* variables) by `configuration.capture_config`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENV_MAX_BYTES = "HYPERDX_CAPTURE_BODY_MAX_BYTES"
ENV_PATTERNS = "HYPERDX_CAPTURE_REDACT_PATTERNS"

DEFAULT_MAX_BODY_BYTES = 4096


@dataclass(frozen=True)
class CaptureConfig:
    """Immutable capture settings; hashable so compiled redactors can be cached per config."""

    enabled: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    redact: bool = True
    extra_patterns: tuple[str, ...] = ()
    excluded_endpoints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_body_bytes < 0:
            raise ValueError(f"{ENV_MAX_BYTES} must be >= 0, got {self.max_body_bytes!r}")
        for pattern in self.extra_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"{ENV_PATTERNS}: invalid regular expression {pattern!r}: {exc}"
                ) from exc
