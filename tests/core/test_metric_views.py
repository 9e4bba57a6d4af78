"""HTTP client metrics of several libraries in one process: no false "conflicting metrics
identities" warning from our URL-free view, and every library's series still exported."""

from __future__ import annotations

import time
from pathlib import Path

from scripts import run_script
from support.otlp import running_receiver


def test_two_client_libraries_share_our_view_without_a_conflict_warning(tmp_path: Path) -> None:
    with running_receiver() as (receiver, sink):
        proc = run_script(
            f"""
            import urllib.request, urllib3
            url = "{receiver.http_url}/v1/traces"  # answers 405/400 to a GET: still a response
            for _ in range(2):
                for call in (lambda: urllib.request.urlopen(url, timeout=5),
                             lambda: urllib3.PoolManager().request("GET", url)):
                    try:
                        call()
                    except Exception:
                        pass
            """,
            receiver,
            tmp_path,
        )
        deadline = time.monotonic() + 10
        scopes: set[str] = set()
        while time.monotonic() < deadline and len(scopes) < 2:
            rows = sink.rows("otel_metrics_histogram")
            scopes = {r["ScopeName"] for r in rows if r["MetricName"].startswith("http.client.")}
            time.sleep(0.2)
    assert "conflicting metrics identities" not in proc.stderr, proc.stderr[-2000:]
    assert {
        "opentelemetry.instrumentation.urllib",
        "opentelemetry.instrumentation.urllib3",
    } <= scopes, scopes
