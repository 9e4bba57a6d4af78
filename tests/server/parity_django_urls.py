"""URLs of the Django app parity_run.py serves."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.urls import path


def item(request: Any, item_id: int) -> HttpResponse:
    return HttpResponse(f"item {item_id}")


def boom(request: Any) -> HttpResponse:
    raise ZeroDivisionError("division by zero")


urlpatterns = [path("items/<int:item_id>/", item, name="item"), path("boom/", boom)]
