"""The `hyperdx` command: run `hyperdx local` and read what it stored.

Only click is imported at module level: chDB and rich come with the ``local`` extra and are
imported inside the commands, so ``hyperdx --help`` works on a base install. A ``doctor``
command is picked up from ``hyperdx.opentelemetry.doctor`` when that module exists.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

    from hyperdx.local.client import Reader

F = TypeVar("F", bound=Callable[..., Any])

# Commands imported only when used, so `hyperdx --help` stays fast.
_LAZY = {"doctor": "hyperdx.opentelemetry.doctor:doctor"}
_LOCAL_EXTRA_HINT = "install the local extra: pip install 'hyperdx-opentelemetry[local]'"


class _Group(click.Group):
    """A click group whose `_LAZY` commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in _LAZY:
            module_name, _, attr = _LAZY[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hyperdx-opentelemetry", prog_name="hyperdx")
def main() -> None:
    """ClickStack's OpenTelemetry tools: a local backend and a viewer for its data.

    \b
    Start a local ClickStack-compatible backend (no Docker):   hyperdx local
    Then read what your app sent:                               hyperdx logs -f
                                                                hyperdx traces
                                                                hyperdx trace <trace id>
                                                                hyperdx metrics
                                                                hyperdx sql "SELECT ..."
    Check the SDK's configuration and endpoint:                 hyperdx doctor
    """


def _data_dir_option(func: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="HYPERDX_LOCAL_DATA_DIR",
        show_envvar=True,
        help="hyperdx local's data directory [default: $XDG_DATA_HOME/hyperdx/local or "
        "~/.local/share/hyperdx/local].",
    )(func)


def _json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(
        func
    )


def _since_option(func: F) -> F:
    return click.option(
        "--since", metavar="DURATION", help="Only the last DURATION, e.g. 30s, 10m, 2h, 1d."
    )(func)


def _service_option(func: F) -> F:
    return click.option("--service", "-s", help="Only this service (ServiceName).")(func)


@contextmanager
def _reader(data_dir: Path | None) -> Iterator[Reader]:
    """A reader for the data (through the running server or directly), errors as exit 1."""
    try:
        from hyperdx.local import client
        from hyperdx.local.store import StoreError
    except ImportError as exc:  # chdb missing: base install
        raise click.ClickException(f"{exc}; {_LOCAL_EXTRA_HINT}") from None
    try:
        reader = client.connect(data_dir)
    except (client.ClientError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    except ImportError as exc:
        raise click.ClickException(f"{exc}; {_LOCAL_EXTRA_HINT}") from None
    try:
        yield reader
    except (client.ClientError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        reader.close()


def _console() -> Console:
    try:
        from rich.console import Console
    except ImportError as exc:
        raise click.ClickException(f"{exc}; {_LOCAL_EXTRA_HINT}") from None
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, 140))
    return console


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, ensure_ascii=False))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--http-port", type=int, default=4318, show_default=True, help="OTLP/HTTP port.")
@click.option("--grpc-port", type=int, default=4317, show_default=True, help="OTLP/gRPC port.")
@click.option(
    "--api-key",
    envvar="HYPERDX_LOCAL_API_KEY",
    show_envvar=True,
    help="Ingestion key to require [default: generated on first start, kept in the data dir].",
)
@click.option(
    "--clickhouse-port",
    type=click.IntRange(min=0, max=65535),
    help="ClickHouse HTTP interface port, read-only, password = the key "
    "[default: 8123, or a free port if taken].",
)
@click.option(
    "--ui-port",
    type=click.IntRange(min=0, max=65535),
    help="HyperDX API port for the hdx CLI, log in with the key "
    "[default: 8000, or a free port if taken].",
)
@click.option(
    "--max-execution-time",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Seconds a query on the ClickHouse/HyperDX ports may run.",
)
@click.option(
    "--max-result-mb",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Largest query result those ports return, in MiB.",
)
@_data_dir_option
def local(
    host: str,
    http_port: int,
    grpc_port: int,
    api_key: str | None,
    clickhouse_port: int | None,
    ui_port: int | None,
    max_execution_time: int,
    max_result_mb: int,
    data_dir: Path | None,
) -> None:
    """Run an embedded ClickStack-compatible backend (OTLP in, chDB storage).

    Receives OTLP over HTTP (protobuf and JSON) and gRPC, checks the ingestion key sent as
    `authorization: <key>`, and stores into ClickStack's tables (otel_logs, otel_traces,
    otel_metrics_*) so the same SQL works here and on ClickStack. Serves the data read-only
    over ClickHouse's HTTP interface (--clickhouse-port) and the part of HyperDX's API the
    `hdx` CLI uses (--ui-port). Stops on Ctrl-C / SIGTERM.
    """
    try:
        from hyperdx.local import server
        from hyperdx.local.store import ReadLimits
    except ImportError as exc:
        raise click.ClickException(f"{exc}; {_LOCAL_EXTRA_HINT}") from None
    code = server.serve(
        data_dir=data_dir,
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        api_key=api_key,
        clickhouse_port=clickhouse_port,
        ui_port=ui_port,
        query_limits=ReadLimits(
            max_execution_time=max_execution_time, max_result_bytes=max_result_mb << 20
        ),
    )
    sys.exit(code)


@main.command()
@_service_option
@click.option(
    "--level",
    "-l",
    help="Minimum severity: trace, debug, info, warn, error, fatal.",
)
@click.option("--text", "-q", help="Only records whose Body contains TEXT (case-insensitive).")
@_since_option
@click.option("--limit", "-n", type=int, default=50, show_default=True, help="How many records.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new records (Ctrl-C stops).")
@_json_option
@_data_dir_option
def logs(
    service: str | None,
    level: str | None,
    text: str | None,
    since: str | None,
    limit: int,
    follow: bool,
    as_json: bool,
    data_dir: Path | None,
) -> None:
    """Recent log records, oldest first (--json: one JSON object per line)."""
    from hyperdx.local import client

    console = None if as_json else _console()

    def emit(rows: list[dict[str, Any]]) -> None:
        if as_json:
            for row in rows:
                _print_json(row)
            sys.stdout.flush()
            return
        from hyperdx.local.views import log_line

        assert console is not None
        for row in rows:
            console.print(log_line(row), soft_wrap=True)

    filters = {"service": service, "level": level, "text": text}
    with _reader(data_dir) as reader:
        rows = client.logs(reader, since=since, limit=limit, **filters)
        emit(rows)
        if not follow:
            if not rows and console is not None:
                console.print("no log records match", style="yellow")
            return
        last = rows[-1]["Timestamp"] if rows else None
        seen = {_log_key(r) for r in rows if r["Timestamp"] == last}
        try:
            while True:
                time.sleep(1.0)
                # until a first record arrives, --since still bounds what counts as new
                window = since if last is None else None
                fresh = client.logs(reader, limit=1000, after=last, since=window, **filters)
                new = [r for r in fresh if _log_key(r) not in seen]
                if not new:
                    continue
                emit(new)
                last = new[-1]["Timestamp"]
                seen = {_log_key(r) for r in fresh if r["Timestamp"] == last}
        except KeyboardInterrupt:
            return


def _log_key(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


@main.command()
@_service_option
@_since_option
@click.option("--limit", "-n", type=int, default=20, show_default=True, help="How many traces.")
@_json_option
@_data_dir_option
def traces(
    service: str | None, since: str | None, limit: int, as_json: bool, data_dir: Path | None
) -> None:
    """Recent traces, newest first: root span, service, duration, status, span count."""
    from hyperdx.local import client

    with _reader(data_dir) as reader:
        rows = client.traces(reader, service=service, since=since, limit=limit)
    if as_json:
        _print_json(rows)
        return
    from hyperdx.local.views import traces_table

    console = _console()
    if not rows:
        console.print("no traces yet", style="yellow")
        return
    console.print(traces_table(rows))


@main.command()
@click.argument("trace_id")
@_json_option
@_data_dir_option
def trace(trace_id: str, as_json: bool, data_dir: Path | None) -> None:
    """One trace as a waterfall: span tree, duration bars, errors, logs under their span."""
    from hyperdx.local import client

    with _reader(data_dir) as reader:
        data = client.trace(reader, trace_id)
    if as_json:
        _print_json(data)
    else:
        from hyperdx.local.views import waterfall

        _console().print(waterfall(data))
    if not data["spans"] and not data["logs"]:
        sys.exit(1)


@main.command()
@click.option("--name", help="Show this one metric over time.")
@_service_option
@_since_option
@_json_option
@_data_dir_option
def metrics(
    name: str | None,
    service: str | None,
    since: str | None,
    as_json: bool,
    data_dir: Path | None,
) -> None:
    """Metric names, kinds and latest values; --name NAME shows one series over time."""
    from hyperdx.local import client

    with _reader(data_dir) as reader:
        if name:
            data: Any = client.metric_series(reader, name, service=service, since=since)
        else:
            data = client.metrics(reader, service=service, since=since)
    if as_json:
        _print_json(data)
        return
    from hyperdx.local import views

    console = _console()
    if name:
        console.print(views.series_view(data))
    elif not data:
        console.print("no metrics yet", style="yellow")
    else:
        console.print(views.metrics_table(data))


@main.command()
@click.argument("query")
@_json_option
@_data_dir_option
def sql(query: str, as_json: bool, data_dir: Path | None) -> None:
    """Run one ClickHouse SQL statement on the local data (ClickStack's tables).

    Example: hyperdx sql "SELECT ServiceName, count() FROM otel_logs GROUP BY ServiceName"
    """
    with _reader(data_dir) as reader:
        result = reader.query(query)
    if as_json:
        _print_json(result.rows)
        return
    from hyperdx.local.views import result_table

    console = _console()
    if result.columns:
        console.print(result_table(result.columns, result.rows))
        console.print(f"{len(result.rows)} row(s)", style="dim")
    else:
        console.print("ok", style="dim")


if __name__ == "__main__":  # pragma: no cover
    main()
