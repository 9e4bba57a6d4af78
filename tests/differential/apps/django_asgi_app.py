"""The same Django app served over ASGI (uvicorn): Django's ASGI request path."""

from __future__ import annotations

from django.core.asgi import get_asgi_application

application = get_asgi_application()
