"""Configuration of advanced network capture (what the lead's options layer hands us)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

ENV_ENABLE = "HYPERDX_ENABLE_ADVANCED_NETWORK_CAPTURE"
ENV_MAX_BYTES = "HYPERDX_CAPTURE_BODY_MAX_BYTES"
ENV_REDACT = "HYPERDX_CAPTURE_REDACT"
ENV_PATTERNS = "HYPERDX_CAPTURE_REDACT_PATTERNS"

DEFAULT_MAX_BODY_BYTES = 4096

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


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


def _parse_bool(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be one of true/false/1/0/yes/no/on/off, got {raw!r}")


def config_from_env(
    environ: Mapping[str, str] | None = None, excluded_endpoints: tuple[str, ...] = ()
) -> CaptureConfig:
    """Parse the HYPERDX_* capture variables (a convenience; the distro may parse them itself)."""
    env = os.environ if environ is None else environ
    raw_max = env.get(ENV_MAX_BYTES)
    max_bytes = DEFAULT_MAX_BODY_BYTES
    if raw_max is not None and raw_max.strip():
        try:
            max_bytes = int(raw_max.strip())
        except ValueError:
            raise ValueError(f"{ENV_MAX_BYTES} must be an integer, got {raw_max!r}") from None
    patterns = tuple(p.strip() for p in env.get(ENV_PATTERNS, "").split(",") if p.strip())
    return CaptureConfig(
        enabled=_parse_bool(ENV_ENABLE, env.get(ENV_ENABLE), False),
        max_body_bytes=max_bytes,
        redact=_parse_bool(ENV_REDACT, env.get(ENV_REDACT), True),
        extra_patterns=patterns,
        excluded_endpoints=excluded_endpoints,
    )
