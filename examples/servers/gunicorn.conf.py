"""Gunicorn configuration with the documented ``post_fork`` hook (S5).

Run:  gunicorn -c examples/servers/gunicorn.conf.py --chdir examples/servers wsgi_app:app
The hook is harmless under ``opentelemetry-instrument`` too (configure is idempotent).
"""

from typing import Any

from hyperdx.opentelemetry import configure_opentelemetry


def post_fork(server: Any, worker: Any) -> None:
    configure_opentelemetry()
