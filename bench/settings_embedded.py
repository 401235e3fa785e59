"""The `make run` settings (SQLite, embedded Redis) with the benchmark's URLconf (bench/urls.py).
Used by the benchmark's embedded stack only; never deployed."""

from resourced.settings.base import *  # noqa: F401,F403

ROOT_URLCONF = "bench.urls"
