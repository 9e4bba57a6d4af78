"""Settings of the differential suite's Django app (no database, no templates)."""

SECRET_KEY = "differential-suite-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "django_app"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
USE_TZ = True
LOGGING_CONFIG = None
