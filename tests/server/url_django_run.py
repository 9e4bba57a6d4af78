"""Django's lean middleware through our span processors, each request with the WSGI path's
``http.url`` preparation and without it (``wsgi._url_plan`` finding no plan), for
test_url_from_middleware.py; prints JSON. Its own interpreter: Django's settings are global.

``python url_django_run.py`` (``OTEL_SEMCONV_STABILITY_OPT_IN`` picks the mode)."""

from __future__ import annotations

import json
import sys
from typing import Any

import django
from django.conf import settings

settings.configure(
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    DEBUG=False,
)
django.setup()

from django.http import HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from test_url_from_middleware import VARIANTS, _Pipeline  # noqa: E402

from hyperdx.opentelemetry.capture.redact import Redactor  # noqa: E402
from hyperdx.opentelemetry.server import wsgi  # noqa: E402
from hyperdx.opentelemetry.server.django import DjangoInstrumentor  # noqa: E402


def item(request: Any, n: str) -> HttpResponse:
    if request.headers.get("X-Set-Url"):
        span = trace.get_current_span()
        span.set_attribute("http.url", "https://bob:pw@h.example/late?password=p&x=1")
    return HttpResponse(f"item {n}")


urlpatterns = [path("items/<n>", item)]


def main() -> None:
    pipeline = _Pipeline(Redactor(True), None)
    DjangoInstrumentor().instrument(
        tracer_provider=pipeline.tracer_provider, meter_provider=MeterProvider()
    )
    client = Client()
    found = no_plan = wsgi._url_plan
    out = []
    for name, changes, expect_prepared in VARIANTS:
        if name == "no-host":
            continue  # the test client always sends one
        extra = {k: v for k, v in changes.items() if v is not None}
        query = extra.pop("QUERY_STRING", "")
        path = f"/items/7?{query}" if query else "/items/7"
        if changes.get("RAW_URI", path) is not None:  # what Gunicorn adds
            extra["RAW_URI"] = extra.get("RAW_URI", path)
        extra.pop("PATH_INFO", None)
        extra.setdefault("HTTP_HOST", "127.0.0.1:8000")
        runs = []
        for plan in (found, lambda tracer: wsgi._NO_PLAN):
            wsgi._url_plan = plan
            wsgi._URL_PLANS.clear()
            pipeline.computed = 0
            client.get(path, **extra)  # type: ignore[arg-type]
            runs.append((pipeline.exported(), pipeline.computed))
        wsgi._url_plan = no_plan
        (prepared, prepared_computed), (hygiene, hygiene_computed) = runs
        out.append(
            {
                "name": name,
                "expect_prepared": expect_prepared,
                "prepared": [repr(s) for s in prepared],
                "hygiene": [repr(s) for s in hygiene],
                "computed": [prepared_computed, hygiene_computed],
                "url": dict(prepared[0][3]).get("http.url") if prepared else None,
            }
        )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
