"""The one place that knows what a secret looks like, and how to hide it.

Everything captured (header values, URLs, JSON/form/text bodies) passes through a Redactor before
it becomes a span attribute, so nothing secret leaves the process. Matching is by *key name*
(header name, JSON key, form/query field), case-insensitive, as a regex search.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

REDACTED = "[REDACTED]"

DEFAULT_PATTERNS: tuple[str, ...] = (
    r"passw(or)?d",
    r"passwd",
    r"pwd",
    r"secret",
    r"token",
    r"api[-_ ]?key",
    r"auth",
    r"credential",
    r"session",
    r"cookie",
    r"credit[-_ ]?card",
    r"card[-_ ]?number",
    r"cvv",
    r"cvc",
    r"ssn",
    r"private[-_ ]?key",
    r"signature",
    r"jwt",
    r"csrf",
    r"xsrf",
)

SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)

# A JSON member whose value may be cut off by truncation: key, colon, then the start of a value.
_JSON_MEMBER = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*')
_JSON_SCALAR = re.compile(r'"(?:[^"\\]|\\.)*"?|[^,}\]\s]*')


class Redactor:
    """Key-pattern based redaction; ``enabled=False`` is the explicit opt-out."""

    def __init__(self, enabled: bool = True, extra_patterns: tuple[str, ...] = ()) -> None:
        self.enabled = enabled
        patterns = DEFAULT_PATTERNS + tuple(extra_patterns)
        self._key = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
        # Linear-time scanners (a token is matched whole, then its name is tested): free-text
        # ``key=value`` / ``key: value`` and XML ``<key ...>value``.
        self._text_kv = re.compile(
            r"""(?<![\w.-])([\w.-]+)(["']?\s*[=:]\s*)("[^"]*"?|'[^']*'?|[^\s&,;<"']+)"""
        )
        self._xml = re.compile(r"(<\s*([\w:.-]+)(?:\s[^>]*)?>)([^<]*)")

    def is_secret_key(self, name: str) -> bool:
        return self.enabled and self._key.search(name) is not None

    def header(self, name: str, value: str) -> str:
        if not self.enabled:
            return value
        lname = name.lower()
        if lname in SENSITIVE_HEADERS or self._key.search(lname):
            return REDACTED
        return value

    def query(self, query: str) -> str:
        """Redact values of secret fields in ``a=1&b=2``; everything else stays byte-identical."""
        if not self.enabled or not query:
            return query
        out = []
        for part in query.split("&"):
            key, sep, _value = part.partition("=")
            if sep and self._key.search(unquote_plus(key)):
                out.append(f"{key}={REDACTED}")
            else:
                out.append(part)
        return "&".join(out)

    def url(self, url: str) -> str:
        """Redact secret query fields and userinfo passwords in a URL."""
        if not self.enabled or not url:
            return url
        try:
            parts = urlsplit(url)
        except ValueError:
            return url
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:{REDACTED}@{hostport}" if ":" in userinfo else netloc
        query = self.query(parts.query)
        if netloc == parts.netloc and query == parts.query:
            return url
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    def target(self, target: str) -> str:
        """Redact an origin-form request target (``/path?query``)."""
        if not self.enabled or "?" not in target:
            return target
        path, _, query = target.partition("?")
        return f"{path}?{self.query(query)}"

    def json_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (REDACTED if self.is_secret_key(str(k)) else self.json_value(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.json_value(v) for v in value]
        return value

    def json_text(self, text: str, complete: bool) -> str:
        """Redact a JSON document; a truncated or invalid one is scrubbed lexically."""
        if not self.enabled:
            return text
        if complete:
            try:
                parsed = json.loads(text)
            except ValueError:
                pass
            else:
                redacted = self.json_value(parsed)
                if redacted == parsed:
                    return text
                return json.dumps(redacted, ensure_ascii=False, separators=(",", ":"))
        return self._json_lexical(text)

    def _json_lexical(self, text: str) -> str:
        out: list[str] = []
        pos = 0
        for match in _JSON_MEMBER.finditer(text):
            if match.start() < pos:
                continue
            if not self._key.search(match.group(1)):
                continue
            start = match.end()
            out.append(text[pos:start])
            if start < len(text) and text[start] in "{[":
                # A nested secret in a document we cannot parse: drop the rest, it is cut anyway.
                out.append(f'"{REDACTED}"')
                return "".join(out)
            scalar = _JSON_SCALAR.match(text, start)
            end = scalar.end() if scalar else start
            out.append(f'"{REDACTED}"')
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def text(self, text: str) -> str:
        """Best-effort scrubbing of free text / XML: ``key=value``, ``key: value``, ``<key>v<``."""
        if not self.enabled:
            return text
        key = self._key

        def xml(m: re.Match[str]) -> str:
            return f"{m.group(1)}{REDACTED}" if key.search(m.group(2)) else m.group(0)

        def kv(m: re.Match[str]) -> str:
            if key.search(m.group(1)):
                return f"{m.group(1)}{m.group(2)}{REDACTED}"
            return m.group(0)

        return self._text_kv.sub(kv, self._xml.sub(xml, text))


@lru_cache(maxsize=16)
def get_redactor(enabled: bool, extra_patterns: tuple[str, ...]) -> Redactor:
    return Redactor(enabled, extra_patterns)


__all__ = ["DEFAULT_PATTERNS", "REDACTED", "SENSITIVE_HEADERS", "Redactor", "get_redactor"]
