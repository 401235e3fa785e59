"""Production: PostgreSQL, Redis or RabbitMQ, S3. Only overrides; secrets have no defaults."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import env

DEBUG = False
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
DATABASES = {"default": env.db_url("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3 * 3600)}
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://resourced")}
# AWS S3 needs no endpoint; MinIO or Ceph set RESOURCED_S3_ENDPOINT_URL.
RESOURCED_S3_ENDPOINT_URL = env.str("RESOURCED_S3_ENDPOINT_URL", default="")
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID")
AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY")
EXPORT_CREDENTIALS_KEYS = env.list("EXPORT_CREDENTIALS_KEYS")
CALLBACK_SECRET = env.str("CALLBACK_SECRET")
CALLBACK_ALLOW_PRIVATE = False
FAULT_INJECTION: dict = {}
FLOWER_BASIC_AUTH = env.str("FLOWER_BASIC_AUTH")
# /metrics shows every export's numbers and the request rates: production never serves it open, so
# a process without a token refuses to start (as deploy/start/flower does without its auth).
METRICS_TOKEN = env.str("METRICS_TOKEN")
if not METRICS_TOKEN.strip():
    raise ImproperlyConfigured("METRICS_TOKEN is empty: /metrics needs a bearer token in production; refusing to start")
LOG_JSON = env.bool("LOG_JSON", default=True)
LOGGING["handlers"]["console"]["formatter"] = "json" if LOG_JSON else "plain"  # noqa: F405

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
