"""Send N ``work`` tasks inside one span and wait for them; prints the trace id and the pids.

Run:  opentelemetry-instrument python celery_producer.py 20
"""

from __future__ import annotations

import json
import sys

from celery_app import work
from opentelemetry import trace


def main(count: int) -> None:
    tracer = trace.get_tracer("examples.producer")
    with tracer.start_as_current_span("produce") as span:
        results = [work.delay(i) for i in range(count)]
        pids = [r.get(timeout=60) for r in results]
        trace_id = format(span.get_span_context().trace_id, "032x")
    print(json.dumps({"trace_id": trace_id, "pids": pids}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
