"""Terminal rendering of `hyperdx local` data with rich: log lines, trace list, waterfall,
metrics. Pure functions from query rows to rich renderables, so they are testable by
rendering into a recording console."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

SPARK = "▁▂▃▄▅▆▇█"
# Terminal escapes and other control characters inside stored text (werkzeug colours its
# access log, anything can be logged): shown as plain text, never interpreted.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: object) -> str:
    """Stored text made safe to print: escape sequences dropped, other controls shown as ?."""
    return _CONTROL.sub("?", _ANSI.sub("", str(text)))


BAR_WIDTH = 40


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def level_style(severity_text: str, severity_number: int = 0) -> str:
    """HyperDX's colour rule: by the prefix of the lower-cased SeverityText."""
    text = (severity_text or "").lower()
    if text.startswith(("emerg", "alert", "crit", "err", "fatal")) or severity_number >= 17:
        return "bold red"
    if text.startswith("warn") or severity_number >= 13:
        return "yellow"
    if text.startswith(("debug", "trace", "verbose")) or 0 < severity_number < 9:
        return "dim"
    return ""


def short_time(timestamp: str) -> str:
    """``2026-01-02 13:14:15.123456789`` -> ``13:14:15.123``."""
    _, _, clock = timestamp.partition(" ")
    return clock[:12] if clock else timestamp


def format_duration(ns: int | float) -> str:
    ns = float(ns)
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.0f} µs"
    return f"{ns:.0f} ns"


def format_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def log_line(row: Mapping[str, Any]) -> Text:
    """One log record: time, level, service, body, and the short span id if any."""
    style = level_style(row.get("SeverityText", ""), int(row.get("SeverityNumber", 0) or 0))
    line = Text()
    line.append(short_time(str(row.get("Timestamp", ""))), style="dim")
    line.append(" ")
    line.append(f"{(row.get('SeverityText') or '-').upper():<7}", style=style or "green")
    line.append(" ")
    line.append(str(row.get("ServiceName", "")), style="cyan")
    line.append("  ")
    # continuation lines of a multi-line body (tracebacks) are indented under the body
    indent = "\n" + " " * len(line.plain)
    line.append(clean(row.get("Body", "")).replace("\n", indent), style=style)
    if row.get("TraceId"):
        line.append(f"  trace={row['TraceId']}", style="dim")
    return line


def traces_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("start", "trace id", "service", "root span", "duration", "status", "spans"):
        table.add_column(name, justify="right" if name in ("duration", "spans") else "left")
    for row in rows:
        status = str(row["Status"])
        status_text = Text("✗ Error", style="bold red") if status == "Error" else Text(status)
        table.add_row(
            short_time(str(row["Start"])),
            str(row["TraceId"]),
            str(row["Service"]),
            clean(row["RootSpan"]),
            format_duration(row["DurationNs"]),
            status_text,
            str(row["Spans"]),
        )
    return table


def _span_order(spans: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], int]]:
    """Spans depth-first from the roots, children by start time; orphans (parent not in the
    trace yet) are shown as roots so nothing is hidden."""
    ids = {s["SpanId"] for s in spans}
    children: dict[str, list[Mapping[str, Any]]] = {}
    roots = []
    for span in sorted(spans, key=lambda s: (int(s["StartNs"]), s["SpanId"])):
        parent = span.get("ParentSpanId") or ""
        if parent and parent in ids and parent != span["SpanId"]:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    out: list[tuple[Mapping[str, Any], int]] = []
    seen: set[str] = set()

    def visit(span: Mapping[str, Any], depth: int) -> None:
        if span["SpanId"] in seen:
            return
        seen.add(span["SpanId"])
        out.append((span, depth))
        for child in children.get(span["SpanId"], []):
            visit(child, depth + 1)

    for root in roots:
        visit(root, 0)
    return out


def _bar(start: int, duration: int, t0: int, total: int, style: str) -> Text:
    """A duration bar on a ``BAR_WIDTH``-column axis spanning the whole trace."""
    total = max(total, 1)
    left = int((start - t0) * BAR_WIDTH / total)
    left = min(max(left, 0), BAR_WIDTH - 1)
    width = max(1, round(duration * BAR_WIDTH / total))
    width = min(width, BAR_WIDTH - left)
    bar = Text(" " * left)
    bar.append("█" * width, style=style)
    bar.append(" " * (BAR_WIDTH - left - width))
    return bar


def waterfall(data: Mapping[str, Any]) -> RenderableType:
    """The span tree with duration bars, errors marked, each log record under its span."""
    spans = data["spans"]
    logs = data["logs"]
    if not spans and not logs:
        return Text(f"no spans or logs for trace {data['trace_id']}", style="yellow")
    starts = [int(s["StartNs"]) for s in spans] + [int(r["TimeNs"]) for r in logs]
    ends = [int(s["StartNs"]) + int(s["Duration"]) for s in spans] + starts
    t0, total = min(starts), max(ends) - min(starts)
    logs_by_span: dict[str, list[Mapping[str, Any]]] = {}
    for row in logs:
        logs_by_span.setdefault(row.get("SpanId") or "", []).append(row)
    span_ids = {s["SpanId"] for s in spans}
    errors = sum(1 for s in spans if s["StatusCode"] == "Error")
    services = sorted({s["ServiceName"] for s in spans})
    header = Text()
    header.append(f"trace {data['trace_id']}", style="bold")
    header.append(
        f"  {_plural(len(spans), 'span')}, {_plural(len(logs), 'log')}, {format_duration(total)}"
        f", services: {', '.join(services) or '-'}"
    )
    if errors:
        header.append(f"  ✗ {errors} error{'s' if errors > 1 else ''}", style="bold red")

    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    table.add_column("span")
    table.add_column("service", style="cyan")
    table.add_column("duration", justify="right")
    table.add_column(f"timeline (0 … {format_duration(total)})", no_wrap=True)
    for span, depth in _span_order(spans):
        is_error = span["StatusCode"] == "Error"
        name = Text("  " * depth + ("└─ " if depth else ""))
        name.append(clean(span["SpanName"]), style="bold red" if is_error else "")
        if span.get("SpanKind") and span["SpanKind"] not in ("Internal", "Unspecified"):
            name.append(f" [{span['SpanKind']}]", style="dim")
        if is_error:
            name.append(" ✗", style="bold red")
            if span.get("StatusMessage"):
                name.append(f" {clean(span['StatusMessage'])}", style="red")
        start = int(span["StartNs"])
        table.add_row(
            name,
            str(span["ServiceName"]),
            format_duration(int(span["Duration"])),
            _bar(start, int(span["Duration"]), t0, total, "red" if is_error else "green"),
        )
        for row in logs_by_span.get(span["SpanId"], []):
            table.add_row(*_log_row(row, depth + 1, t0, total))
    orphans = [r for sid, rows in logs_by_span.items() if sid not in span_ids for r in rows]
    for row in orphans:
        table.add_row(*_log_row(row, 0, t0, total))
    return Group(header, table)


def _log_row(row: Mapping[str, Any], depth: int, t0: int, total: int) -> list[RenderableType]:
    style = level_style(row.get("SeverityText", ""), int(row.get("SeverityNumber", 0) or 0))
    text = Text("  " * depth + "• ", style="dim")
    text.append(f"{(row.get('SeverityText') or 'log').upper()} ", style=style or "green")
    text.append(clean(row.get("Body", "")), style=style)
    offset = int(row["TimeNs"]) - t0
    marker = _bar(int(row["TimeNs"]), 0, t0, total, style or "blue")
    return [
        text,
        Text(str(row.get("ServiceName", "")), style="dim"),
        f"+{format_duration(offset)}",
        marker,
    ]


def sparkline(values: Sequence[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo
    if span == 0:
        return SPARK[len(SPARK) // 2] * len(values)
    return "".join(SPARK[int((v - lo) / span * (len(SPARK) - 1))] for v in values)


def latest_text(row: Mapping[str, Any]) -> str:
    if row["Kind"] in ("histogram", "exponential_histogram", "summary"):
        count = int(row["LatestCount"])
        total = float(row["LatestValue"])
        avg = f", avg {format_number(total / count)}" if count else ""
        return f"count {count}, sum {format_number(total)}{avg}"
    return format_number(float(row["LatestValue"]))


def metrics_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("metric", "kind", "unit", "services", "points", "latest", "value", "trend"):
        table.add_column(name, justify="right" if name == "points" else "left")
    for row in rows:
        table.add_row(
            str(row["MetricName"]),
            str(row["Kind"]),
            str(row["Unit"]),
            ", ".join(row["Services"]),
            str(row["Points"]),
            short_time(str(row["Latest"])),
            latest_text(row),
            Text(sparkline([float(v) for v in row["Values"][-30:]]), style="green"),
        )
    return table


def series_view(data: Mapping[str, Any]) -> RenderableType:
    """One metric over time: a sparkline per attribute set, then the points."""
    points = data["points"]
    header = Text(f"{data['name']} ({data['kind']}{', ' + data['unit'] if data['unit'] else ''})")
    header.stylize("bold")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for point in points:
        label = json.dumps(point["Attributes"], sort_keys=True, separators=(",", "="))
        groups.setdefault(f"{point['ServiceName']} {label}", []).append(point)
    summary = Table(box=None, header_style="bold", pad_edge=False)
    summary.add_column("series")
    summary.add_column("trend")
    summary.add_column("last", justify="right")
    for label, group in groups.items():
        values = [float(p["Value"]) for p in group]
        summary.add_row(
            label, Text(sparkline(values[-40:]), style="green"), format_number(values[-1])
        )
    detail = Table(box=None, header_style="bold", pad_edge=False)
    detail.add_column("time")
    detail.add_column("service", style="cyan")
    detail.add_column("attributes", style="dim")
    detail.add_column("value", justify="right")
    if data["kind"] in ("histogram", "exponential_histogram", "summary"):
        detail.add_column("count", justify="right")
    for point in points[-50:]:
        cells = [
            str(point["TimeUnix"]),
            str(point["ServiceName"]),
            json.dumps(point["Attributes"], sort_keys=True),
            format_number(float(point["Value"])),
        ]
        if data["kind"] in ("histogram", "exponential_histogram", "summary"):
            cells.append(str(point["Count"]))
        detail.add_row(*cells)
    return Group(header, summary, Text(""), detail)


def result_table(columns: Sequence[tuple[str, str]], rows: Iterable[Mapping[str, Any]]) -> Table:
    """Any SQL result as a table; maps and arrays shown as compact JSON."""
    table = Table(header_style="bold")
    for name, _type in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        cells = []
        for name, _type in columns:
            value = row.get(name)
            cells.append(
                clean(value) if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            )
        table.add_row(*cells)
    return table
