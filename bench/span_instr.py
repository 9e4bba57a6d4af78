"""Instructions per span of the server span's life on the request thread, by stage (cachegrind).

What the lean WSGI middleware does for its span, through the distro's real pipeline
(``configure_opentelemetry``: baggage and hygiene processors, our batch span processor), cut
after each stage so that the differences between stages are what each stage costs:

  dict    the request's attribute dict (the floor: the middleware builds it anyway)
  start   + ``fast_span.start_span`` (ids, sampler, span object, processors' ``on_start``)
  attach  + the span's context made, attached and detached (``fast_context``)
  status  + ``set_attribute("http.status_code", 200)``
  end     + ``span.end()`` (hygiene's end, snapshot, queue append)
  encode  + the export thread's encoding of each queued snapshot (slices of 32) and the
          batch's assembly, once per 512 spans, in the same thread (no gzip, no post)

Each stage runs twice under ``valgrind --tool=cachegrind`` (few and many spans); the
difference divided by the extra spans is per span. Export is kept out of the window as in
``instr_count.py`` (long delays, a queue that holds every span, ``os._exit``).

    .venv/bin/python bench/span_instr.py [--stages dict,start,attach,status,end,encode]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any

from instr_count import QUIET_EXPORT

STAGES = ("dict", "start", "attach", "status", "end", "encode")
ATTRS = {
    "http.method": "GET",
    "http.server_name": "127.0.0.1",
    "http.scheme": "http",
    "net.host.name": "127.0.0.1:8000",
    "http.host": "127.0.0.1:8000",
    "net.host.port": 8000,
    "http.target": "/items/7",
    "net.peer.ip": "127.0.0.1",
    "net.peer.port": 50000,
    "http.user_agent": "bench/1.0",
    "http.flavor": "1.1",
    "http.route": "/items/<int:item_id>",
}


def runner(stage: str) -> Any:
    from opentelemetry import context
    from opentelemetry.trace import SpanKind

    from hyperdx.opentelemetry import configure_opentelemetry, fast_context, fast_span
    from hyperdx.opentelemetry.export._spans import assemble, group_encoded
    from hyperdx.opentelemetry.server.wsgi import _SPAN_KEY

    pipeline = configure_opentelemetry(
        service_name="span-instr", endpoint="http://127.0.0.1:9", instrument=False
    )
    assert pipeline is not None
    tracer = pipeline.tracer_provider.get_tracer("opentelemetry.instrumentation.wsgi")
    processor = pipeline.tracer_provider._active_span_processor._span_processors[-1]
    exporter = processor.span_exporter
    batcher = processor._batcher
    level = STAGES.index(stage)
    empty = context.Context()
    server = SpanKind.SERVER
    name = "GET /items/<int:item_id>"
    start_span = fast_span.start_span
    attach, detach, get_current = fast_context.attach, fast_context.detach, fast_context.get_current

    def run(count: int) -> None:
        for _ in range(count):
            attrs = dict(ATTRS)
            if level < 1:
                continue
            get_current()
            span = start_span(tracer, name, empty, server, attrs, None, plain=True)
            if level < 2:
                continue
            token = attach(context.Context({_SPAN_KEY: span}))
            if level >= 3:
                span.set_attribute("http.status_code", 200)
            if level >= 4:
                span.end()
            detach(token)
        if level >= 5:
            queue = batcher._queue
            while queue:
                batch = [queue.popleft() for _ in range(min(512, len(queue)))]
                assemble(group_encoded(exporter._finish_encoding(batch)))
        else:
            batcher._queue.clear()

    return run


def child(stage: str, n: int) -> None:
    os.environ.update(QUIET_EXPORT)
    run = runner(stage)
    run(512)  # warm-up: caches of encoded attributes, names, prefixes
    run(n)
    sys.stdout.flush()
    os._exit(0)


def instructions(stage: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=no",
                f"--cachegrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                stage,
                "--spans",
                str(n),
            ],  # fmt: skip
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
        assert found, proc.stderr[-2000:]
        return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--few", type=int, default=512)
    parser.add_argument("--many", type=int, default=2560)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--spans", type=int, default=0)
    parser.add_argument("--child", metavar="STAGE")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.spans)
        return
    previous = None
    for stage in args.stages.split(","):
        few = instructions(stage, args.few)
        many = instructions(stage, args.many)
        per = round((many - few) / (args.many - args.few))
        row = {"stage": stage, "instr_per_span": per}
        if previous is not None:
            row["added_by_stage"] = per - previous
        previous = per
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
