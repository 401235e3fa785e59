"""The test suite: the same settings, with a scratch area per run and fast polling.

Every run gets its own var/ directory (database, broker folders, work dirs), created here before
base.py reads it and exported so that the worker processes the tests start share it.
"""

import os
import tempfile

if not os.environ.get("RESOURCED_VAR_DIR"):
    os.environ["RESOURCED_VAR_DIR"] = tempfile.mkdtemp(prefix="resourced-test-")
os.environ.setdefault("RESOURCED_TEST_DB", os.path.join(os.environ["RESOURCED_VAR_DIR"], "test.sqlite3"))

from .base import *  # noqa: E402,F401,F403
from .base import DATABASES, env  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
EXPORT_HEARTBEAT_SECONDS = 1
# the suite posts many requests with one session; tests/test_request_limits.py turns the limit on
API_SUBMIT_RATE = env.str("API_SUBMIT_RATE", default="")
RESTORE_POLL_SECONDS = env.int("RESTORE_POLL_SECONDS", default=1)
# waiting exports (archive restores, the live edge) look again every second and give up in seconds
EXPORT_RESTORE_CHECK_SECONDS = env.float("EXPORT_RESTORE_CHECK_SECONDS", default=1.0)
EXPORT_RESTORE_MAX_HOURS = env.float("EXPORT_RESTORE_MAX_HOURS", default=15 / 3600)
EXPORT_LIVE_CHECK_MAX_SECONDS = env.float("EXPORT_LIVE_CHECK_MAX_SECONDS", default=1.0)
EXPORT_LIVE_STALL_SECONDS = env.float("EXPORT_LIVE_STALL_SECONDS", default=5.0)
EXPORT_LIVE_WAIT_SECONDS = env.float("EXPORT_LIVE_WAIT_SECONDS", default=8.0)

# A file, not memory: the Celery worker processes that the tests start open the same database.
DATABASES["default"]["TEST"] = {"NAME": os.environ["RESOURCED_TEST_DB"]}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  (whitenoise wants it to exist)
