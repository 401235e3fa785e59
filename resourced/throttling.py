"""Rate limits per API session (DRF throttling on the cache): a client that submits faster than
API_SUBMIT_RATE is answered 429 in its endpoint's shape, with TimeWait in ms."""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from resourced.sessions import SessionUser


class SessionSubmitThrottle(SimpleRateThrottle):
    """Submissions per session user. Polling by re-posting the same body counts too: the default
    rate leaves room for a poll every second."""

    scope = "submit"

    def get_rate(self):
        return settings.API_SUBMIT_RATE or None

    def get_cache_key(self, request, view):
        # throttles run after authentication and permissions: a request without a valid session
        # was answered 401 before (HasSession); None (not throttled) only on a view without them
        if not isinstance(request.user, SessionUser):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.userid}
