"""Production settings with the benchmark's URLconf (bench/urls.py): the service's URLs plus one
constant DRF view to compare the API with. Used by the benchmark's gunicorn only; never deployed."""

from resourced.settings.production import *  # noqa: F401,F403

ROOT_URLCONF = "bench.urls"
