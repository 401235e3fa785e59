import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "resourced.settings.base")
application = get_wsgi_application()

# Every module, URL pattern and view the process will use is loaded now (the resolver imports the
# views): move them out of the collector's reach. Python's full collections walk every tracked
# object, ~120 000 of them here, which stalled one request in about a thousand for 25-30 ms (the
# p99 of a re-post poll); after the freeze a full collection scans only what requests left behind.
_views = get_resolver().url_patterns  # (reading them imports every view module)
gc.freeze()
