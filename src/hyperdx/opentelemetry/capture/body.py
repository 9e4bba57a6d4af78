"""Bodies: the size cap, which content types are text, charset decoding, and the tee buffer."""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from .redact import REDACTED, Redactor

_TEXT_SUBTYPES = {
    "json",
    "x-www-form-urlencoded",
    "xml",
    "javascript",
    "ecmascript",
    "graphql",
    "x-ndjson",
    "ndjson",
    "yaml",
    "x-yaml",
    "csv",
}


def parse_content_type(value: str | None) -> tuple[str, str | None]:
    """Return (lower-case media type, charset or None) of a Content-Type header."""
    if not value:
        return "", None
    return _parse_content_type(value)


@lru_cache(maxsize=256)  # an app answers with a handful of content types
def _parse_content_type(value: str) -> tuple[str, str | None]:
    media, *params = value.split(";")
    charset = None
    for param in params:
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset":
            charset = val.strip().strip('"').strip("'") or None
    return media.strip().lower(), charset


@lru_cache(maxsize=256)
def is_text(media_type: str) -> bool:
    """Text-like content is captured as text; anything else (or unknown) only as a size."""
    if not media_type or "/" not in media_type:
        return False
    major, _, minor = media_type.partition("/")
    if major == "text":
        return True
    if minor.endswith("+json") or minor.endswith("+xml"):
        return True
    return major == "application" and minor in _TEXT_SUBTYPES


_UTF8 = frozenset({None, "utf-8", "UTF-8", "utf8", "UTF8"})


def decode(data: bytes, charset: str | None, complete: bool) -> str:
    """Decode with replacement; a multi-byte character cut by the cap is dropped, not mangled."""
    if complete and charset in _UTF8:
        return data.decode("utf-8", "replace")  # what the incremental decoder gives, final=True
    name = charset or "utf-8"
    try:
        decoder = codecs.getincrementaldecoder(name)(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(data, final=complete)


class Tee:
    """Keeps the first ``cap`` bytes of what passes through and counts all of it."""

    __slots__ = ("cap", "size", "_parts", "_kept")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.size = 0
        self._parts: list[bytes] = []
        self._kept = 0

    def feed(self, chunk: Any) -> None:
        if not chunk:
            return
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        n = len(chunk)
        self.size += n
        room = self.cap - self._kept
        if room > 0:
            piece = bytes(chunk[:room]) if n > room else bytes(chunk)
            self._parts.append(piece)
            self._kept += len(piece)

    @property
    def data(self) -> bytes:
        if len(self._parts) > 1:
            self._parts = [b"".join(self._parts)]
        return self._parts[0] if self._parts else b""


def body_attributes(
    prefix: str,
    data: bytes,
    size: int | None,
    content_type: str | None,
    redactor: Redactor,
    cap: int,
) -> dict[str, Any]:
    """Attributes for one body: ``<prefix>`` text (capped, redacted), ``.size``, ``.truncated``.

    ``data`` holds at most ``cap`` bytes of the body; ``size`` is the full size when known.
    """
    attrs: dict[str, Any] = {}
    if size is None:
        size = len(data)
    if size <= 0 and not data:
        return attrs
    attrs[f"{prefix}.size"] = size
    media, charset = _parse_content_type(content_type) if content_type else ("", None)
    if not is_text(media) or cap <= 0:
        return attrs
    kept = data[:cap]
    complete = len(kept) >= size
    if complete and charset in _UTF8:
        text = kept.decode("utf-8", "replace")
    else:
        text = decode(kept, charset, complete)
    if media.endswith("json"):
        text = redactor.json_text(text, complete)
    elif media == "application/x-www-form-urlencoded":
        text = redactor.query(text)
    else:
        text = redactor.text(text)
    attrs[prefix] = text
    if not complete:
        attrs[f"{prefix}.truncated"] = True
    return attrs


HeaderKeys = dict[Any, tuple[str, bool]]
_MAX_KEYS = 1024  # header names come from clients: the cache is bounded


def header_key(prefix: str, name: Any, redactor: Redactor, keys: HeaderKeys) -> tuple[str, bool]:
    """(attribute key, is secret) of a header name as sent (str or bytes), cached in ``keys``."""
    entry = keys.get(name)
    if entry is None:
        text = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        lname = text.lower()
        entry = (f"{prefix}.{lname}", redactor.header(lname, "") == REDACTED)
        if len(keys) >= _MAX_KEYS:
            keys.clear()
        keys[name] = entry
    return entry


def header_attributes(
    prefix: str,
    items: Iterable[tuple[Any, Any]],
    redactor: Redactor,
    keys: HeaderKeys | None = None,
    out: dict[str, Any] | None = None,
    firsts: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """``<prefix>.<lower-case name>`` -> values joined with ", " (never split), secrets redacted.

    ``keys`` caches name -> (attribute key, secret) across requests (one dict per prefix and
    redactor); ``out`` is a dict to add to (so a request's attributes are set in one call).
    ``firsts`` maps attribute keys to None; each gets its header's first value, as
    ``find_header`` returns it, in the same pass (secret or not).
    """
    if keys is None:
        keys = {}
    attrs: dict[str, Any] = {} if out is None else out
    cached = keys.get
    for name, value in items:
        entry = cached(name)
        if entry is None:
            entry = header_key(prefix, name, redactor, keys)
        key, secret = entry
        if firsts is not None and key in firsts and firsts[key] is None:
            firsts[key] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        if secret:
            attrs[key] = REDACTED
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        elif not isinstance(value, str):
            value = str(value)
        attrs[key] = f"{attrs[key]}, {value}" if key in attrs else value
    return attrs


def find_header(items: Iterable[tuple[Any, Any]], wanted: str) -> str | None:
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if str(name).lower() == wanted:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def content_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        n = int(value.strip())
    except ValueError:
        return None
    return n if n >= 0 else None
