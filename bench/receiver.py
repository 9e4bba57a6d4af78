"""A minimal OTLP/HTTP sink for benchmarks: reads each body and answers 200 at once.

It must cost as little CPU as possible so it does not steal from the measured process, so it
only counts requests and bytes. ``--count-items`` additionally decodes bodies (C protobuf) to
count spans / log records, for the end-to-end CPU benchmark that needs to know when
everything has arrived. ``GET /stats`` returns the counters as JSON; ``POST /reset`` zeroes them.
The port it bound is printed on stdout as ``PORT <n>``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import zlib

_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 2\r\n\r\n\x0a\x00"
)


class Counters:
    def __init__(self, count_items: bool) -> None:
        self.count_items = count_items
        self.requests = 0
        self.bytes = 0
        self.items: dict[str, int] = {"traces": 0, "logs": 0, "metrics": 0}

    def as_json(self) -> bytes:
        body = {"requests": self.requests, "bytes": self.bytes, "items": self.items}
        return json.dumps(body).encode()

    def record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.requests += 1
        self.bytes += len(body)
        if not self.count_items:
            return
        enc = headers.get("content-encoding", "")
        if enc == "gzip":
            body = gzip.decompress(body)
        elif enc == "deflate":
            body = zlib.decompress(body)
        signal = path.rstrip("/").rsplit("/", 1)[-1]
        self.items[signal] = self.items.get(signal, 0) + _count(signal, body)


def _count(signal: str, body: bytes) -> int:
    if signal == "traces":
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        req = ExportTraceServiceRequest.FromString(body)
        return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    if signal == "logs":
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )

        lreq = ExportLogsServiceRequest.FromString(body)
        return sum(len(sl.log_records) for rl in lreq.resource_logs for sl in rl.scope_logs)
    return 1


async def _serve_conn(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counters: Counters
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            if method == "GET" and path == "/stats":
                payload = counters.as_json()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
            elif path == "/reset":
                counters.requests = counters.bytes = 0
                counters.items = dict.fromkeys(counters.items, 0)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            else:
                counters.record(path, headers, body)
                writer.write(_OK)
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _main(port: int, count_items: bool) -> None:
    counters = Counters(count_items)
    server = await asyncio.start_server(
        lambda r, w: _serve_conn(r, w, counters), "127.0.0.1", port, backlog=128
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--count-items", action="store_true")
    args = ap.parse_args()
    asyncio.run(_main(args.port, args.count_items))


if __name__ == "__main__":
    main()
