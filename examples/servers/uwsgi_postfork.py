"""uWSGI post-fork hook (S6): configure telemetry in every worker.

Run:  uwsgi --ini examples/servers/uwsgi.ini   (which imports this module)

With ``lazy-apps`` this module is imported inside each worker, after uWSGI ran its post-fork
hooks, so a ``@postfork`` function would never be called there: configure right away instead.
"""

import uwsgi
from uwsgidecorators import postfork

from hyperdx.opentelemetry import configure_opentelemetry

if uwsgi.worker_id() > 0:  # lazy-apps: already in a worker
    configure_opentelemetry()
else:

    @postfork
    def init_telemetry() -> None:
        configure_opentelemetry()
