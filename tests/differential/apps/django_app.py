"""Django app of the differential suite (gunicorn; DJANGO_SETTINGS_MODULE=django_settings)."""

from __future__ import annotations

from collections.abc import Iterator

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.http import require_GET
from shared import STREAM_CHUNKS, context_payload


@require_GET
def item(request: HttpRequest, item_id: str) -> HttpResponse:
    return JsonResponse({"item": item_id})


@require_GET
def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom from the app")


@require_GET
def stream(request: HttpRequest) -> HttpResponse:
    def chunks() -> Iterator[bytes]:
        yield from STREAM_CHUNKS

    return StreamingHttpResponse(chunks(), content_type="text/plain")


@require_GET
def ctx(request: HttpRequest) -> HttpResponse:
    return JsonResponse(context_payload())


@require_GET
def excluded(request: HttpRequest, which: str) -> HttpResponse:
    return JsonResponse({"excluded": which})


urlpatterns = [
    path("items/<str:item_id>", item),
    path("boom", boom),
    path("stream", stream),
    path("ctx", ctx),
    path("excluded/<str:which>", excluded),
]

application = get_wsgi_application()
