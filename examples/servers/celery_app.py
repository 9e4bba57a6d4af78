"""A Celery app with a prefork worker pool, for the examples and the tests.

Worker:    opentelemetry-instrument celery -A celery_app worker --pool prefork -c 2
Producer:  opentelemetry-instrument python celery_producer.py 20
Broker and result backend: ``CELERY_BROKER_URL`` (default redis://127.0.0.1:6379/0).

Each ``work`` task logs one record, adds 1 to ``app.tasks`` and calls ``PING_URL`` (a client
span), all inside the task's span, which joins the producer's trace.
"""

from __future__ import annotations

import logging
import os
import urllib.request

from celery import Celery
from opentelemetry import metrics

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery("celery_app", broker=BROKER, backend=BROKER)
app.conf.update(broker_connection_retry_on_startup=True)

log = logging.getLogger("examples.tasks")
tasks_done = metrics.get_meter("examples.tasks").create_counter("app.tasks")
PING_URL = os.environ.get("PING_URL", "")


@app.task
def work(n: int) -> int:
    log.warning("handled task %d", n)
    tasks_done.add(1)
    if PING_URL:
        with urllib.request.urlopen(PING_URL, timeout=5) as resp:
            resp.read()
    return os.getpid()
