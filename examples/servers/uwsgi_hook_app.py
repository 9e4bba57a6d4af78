"""The README's uWSGI recipe in the app file itself: a ``@postfork`` hook, then the app.

Run (with or without ``opentelemetry-instrument`` in front):

    uwsgi --http 127.0.0.1:8000 --master --processes 2 --wsgi-file uwsgi_hook_app.py \
          --enable-threads --die-on-term --disable-logging

The hook comes first, before any other import of the app, as in most apps; the routes are
those of ``wsgi_app``.
"""

from uwsgidecorators import postfork

from hyperdx.opentelemetry import configure_opentelemetry


@postfork
def init_tracing() -> None:
    configure_opentelemetry()


from wsgi_app import app, application  # noqa: E402,F401 - the routes, after the hook
