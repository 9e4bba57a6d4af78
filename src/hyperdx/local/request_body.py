"""Reading a capped request body on the aiohttp listeners (queries, login)."""

from __future__ import annotations

from aiohttp import StreamReader

__all__ = ["read_capped"]


async def read_capped(content: StreamReader, cap: int) -> bytes:
    """The whole body, or its first ``cap + 1`` bytes when it is longer (the caller answers
    413 then).

    ``StreamReader.read(n)`` returns as soon as *some* data has arrived, so a body sent in
    several chunks or packets (chunked encoding, a slow client) came back cut short and a
    query was run without its end; this reads until end of body or past the cap.
    """
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await content.read(cap + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
