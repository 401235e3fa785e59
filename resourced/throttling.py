"""Rate limits per API session (DRF throttling on the cache): a client that submits faster than
API_SUBMIT_RATE is answered 429 in its endpoint's shape, with TimeWait in ms."""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from resourced.sessions import SessionError, authenticate


class SessionSubmitThrottle(SimpleRateThrottle):
    """Submissions per session user. Polling by re-posting the same body counts too: the default
    rate leaves room for a poll every second."""

    scope = "submit"

    def get_rate(self):
        return settings.API_SUBMIT_RATE or None

    def get_cache_key(self, request, view):
        try:
            user = authenticate(request)
        except SessionError:  # no valid session: the view answers 401 itself
            return None
        return self.cache_format % {"scope": self.scope, "ident": user}
