"""A minimal Django project wired the way django-anymail's docs show, for bench/webhooks.py:
anymail's SendGrid tracking webhook with signature verification, and a signal receiver that
stores each event with one ``get_or_create``, on Django's default SQLite backend."""

import os

SECRET_KEY = "bench-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["anymail", "anymail_site.receiver"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "anymail_site.urls"
WSGI_APPLICATION = "anymail_site.wsgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["BENCH_DJANGO_DB"]}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024
ANYMAIL = {"SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": os.environ["SENDGRID_WEBHOOK_PUBLIC_KEY"]}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
