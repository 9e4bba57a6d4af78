"""Django hello-world for the request-overhead benchmark (served by Gunicorn, 1 sync worker).

Laid out as Django's own wsgi.py template: Django is imported before DJANGO_SETTINGS_MODULE
is set (agents that instrument at start-up need it exported; see the bench's environment).
"""

import os

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello, World!")


urlpatterns = [path("", hello)]

application = get_wsgi_application()
