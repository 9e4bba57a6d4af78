"""Where the SDK keeps a pipeline's processors, readers and exporters, in one place.

These are private SDK attributes; the fork handling (``forking``, ``uwsgi_fork``) reaches
them only through the functions here, so an SDK change is fixed in one module.
"""

from __future__ import annotations

from typing import Any, Protocol

from opentelemetry.sdk.resources import Resource


class Pipeline(Protocol):
    resource: Resource
    tracer_provider: Any
    logger_provider: Any
    meter_provider: Any
    options: Any


def exporters(pipeline: Pipeline) -> list[Any]:
    found = [getattr(p, "_exporter", None) for p in span_and_log_processors(pipeline)]
    found += [getattr(r, "_exporter", None) for r in metric_readers(pipeline)]
    return [e for e in found if e is not None]


def run_sdk_fork_handlers(pipeline: Pipeline) -> None:
    """Do what the SDK's ``os.register_at_fork`` hooks would have done in this child."""
    for provider in (pipeline.tracer_provider, pipeline.logger_provider, pipeline.meter_provider):
        handle = getattr(provider, "_handle_fork", None)
        if callable(handle):
            handle()
    reinit_executors(pipeline)
    for processor in span_and_log_processors(pipeline):
        reinit = getattr(processor, "_at_fork_reinit", None)
        if callable(reinit):
            reinit()
    for reader in metric_readers(pipeline):
        # Without Python's at-fork hooks ``threading`` still believes the master's reader thread
        # is alive in this child (and ``shutdown`` would wait out its whole timeout joining it),
        # so always start a new one.
        reinit = getattr(reader, "_at_fork_reinit", None)
        if getattr(reader, "_daemon_thread", None) is not None and callable(reinit):
            reinit()


def span_and_log_processors(pipeline: Pipeline) -> list[Any]:
    """The batch processors (unwrapped) of the tracer and logger providers."""
    found: list[Any] = []
    for multi, attr in multi_processors(pipeline):
        for proc in getattr(multi, attr, ()):
            found.append(getattr(proc, "_batch_processor", proc))
    return found


def multi_processors(pipeline: Pipeline) -> list[tuple[Any, str]]:
    return [
        (getattr(pipeline.tracer_provider, "_active_span_processor", None), "_span_processors"),
        (
            getattr(pipeline.logger_provider, "_multi_log_record_processor", None),
            "_log_record_processors",
        ),
    ]


def reinit_executors(pipeline: Pipeline) -> None:
    """Concurrent multi-processors own a thread pool whose threads did not survive the fork."""
    for multi, _attr in multi_processors(pipeline):
        init_executor = getattr(multi, "_init_executor", None)
        if callable(init_executor):
            init_executor(getattr(getattr(multi, "_executor", None), "_max_workers", 2))


def metric_readers(pipeline: Pipeline) -> list[Any]:
    """Readers of the meter provider, including ones added after construction."""
    mp = pipeline.meter_provider
    readers = list(getattr(mp, "_metric_readers", ()))
    storages = getattr(getattr(mp, "_measurement_consumer", None), "_reader_storages", {})
    readers += [r for r in storages if r not in readers]
    return readers
