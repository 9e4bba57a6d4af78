"""Rendering rules of the terminal views, on hand-made rows (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("rich")

from rich.console import Console  # noqa: E402

from hyperdx.local import views  # noqa: E402

T0 = 1_700_000_000_000_000_000


def render(renderable: Any) -> str:
    console = Console(width=140, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def span(sid: str, parent: str, name: str, start: int, dur: int, status: str = "Unset") -> dict:
    return {
        "SpanId": sid,
        "ParentSpanId": parent,
        "SpanName": name,
        "SpanKind": "Internal",
        "ServiceName": "svc",
        "StartNs": T0 + start,
        "Duration": dur,
        "StatusCode": status,
        "StatusMessage": "boom" if status == "Error" else "",
    }


def test_waterfall_tree_bars_errors_and_logs() -> None:
    data = {
        "trace_id": "ab" * 16,
        "spans": [
            span("c" * 16, "a" * 16, "child", 2_000_000, 6_000_000, "Error"),
            span("a" * 16, "", "root", 0, 10_000_000),
            span("d" * 16, "f" * 16, "orphan", 1_000_000, 1_000_000),
        ],
        "logs": [
            {
                "TimeNs": T0 + 3_000_000,
                "SpanId": "c" * 16,
                "SeverityText": "error",
                "SeverityNumber": 17,
                "Body": "\x1b[31mfailed\x1b[0m",
                "ServiceName": "svc",
            },
            {
                "TimeNs": T0 + 9_000_000,
                "SpanId": "",
                "SeverityText": "info",
                "SeverityNumber": 9,
                "Body": "no span",
                "ServiceName": "svc",
            },
        ],
    }
    lines = render(views.waterfall(data)).splitlines()
    assert "3 spans, 2 logs, 10.0 ms" in lines[0] and "✗ 1 error" in lines[0]
    order = [
        next(i for i, ln in enumerate(lines) if text in ln)
        for text in ("root", "└─ child ✗ boom", "• ERROR failed", "orphan", "• INFO no span")
    ]
    assert order == sorted(order)
    root_line = next(ln for ln in lines if " root " in ln or ln.startswith("root"))
    assert "█" * 40 in root_line  # the root spans the whole axis
    child_line = next(ln for ln in lines if "child" in ln)
    assert child_line.count("█") == 24 and "6.0 ms" in child_line  # 6 of 10 ms on 40 columns
    assert "\x1b" not in "\n".join(lines)


def test_empty_trace_message() -> None:
    assert "no spans or logs for trace" in render(
        views.waterfall({"trace_id": "0" * 32, "spans": [], "logs": []})
    )


@pytest.mark.parametrize(
    ("ns", "text"),
    [(12, "12 ns"), (1500, "2 µs"), (2_500_000, "2.5 ms"), (3_210_000_000, "3.21 s")],
)
def test_durations(ns: int, text: str) -> None:
    assert views.format_duration(ns) == text


def test_sparkline_and_levels() -> None:
    assert views.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert views.sparkline([5, 5]) == "▅▅"
    assert views.level_style("WARNING") == "yellow"
    assert views.level_style("critical") == "bold red"
    assert views.level_style("", 17) == "bold red"
    assert views.level_style("debug") == "dim"
    assert views.clean("a\x1b[1mb\x07") == "ab?"
