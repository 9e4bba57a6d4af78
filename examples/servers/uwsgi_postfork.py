"""uWSGI post-fork hook (S6): configure telemetry in every worker.

Run:  uwsgi --ini examples/servers/uwsgi.ini   (which imports this module)
"""

from uwsgidecorators import postfork

from hyperdx.opentelemetry import configure_opentelemetry


@postfork
def init_telemetry() -> None:
    configure_opentelemetry()
