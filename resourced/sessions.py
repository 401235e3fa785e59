"""API client sessions (docs/api.md §5): the X-Session-Id header or a SessionId in the body.

`local` checks ApiSession rows issued by `manage.py createsession`; `remote` asks
SESSION_VALIDATE_URL and caches the answer for SESSION_CACHE_SECONDS.

The API views see the session through DRF: `SessionIdAuthentication` (the default authentication
class) makes `request.user` a `SessionUser`, `HasSession` (the default permission) answers 401
without one, and the drf-spectacular extension at the end shows it in /api/docs/ (Authorize).
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

import requests
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.permissions import BasePermission

from resourced.errors import ServiceError
from resourced.models import ApiSession, hash_session_id, new_session_id

logger = logging.getLogger(__name__)

SESSION_HEADER = "HTTP_X_SESSION_ID"
SESSION_REQUIRED = "SessionId: required (in the body or the X-Session-Id header)"


class SessionError(ServiceError):
    kind = "auth"
    status = 401


def session_create(*, userid: str, ttl_seconds: int | None = None, note: str = "") -> tuple[ApiSession, str]:
    """Issue a session; returns the row and the SessionId, which is not stored and shown once."""
    ttl = settings.SESSION_DEFAULT_TTL if ttl_seconds is None else ttl_seconds
    session_id = new_session_id()
    session = ApiSession.objects.create(
        key_hash=hash_session_id(session_id),
        key_prefix=session_id[:6],
        userid=userid,
        expires_at=timezone.now() + timedelta(seconds=ttl),
        note=note,
    )
    return session, session_id


def session_id_from_request(request) -> str:
    """The X-Session-Id header; without it, the body's SessionId field. The header decides alone
    when it is sent (it is what /api/docs/ sends once authorized, whatever SessionId its example
    body holds), and the body is then not read here."""
    value = request.META.get(SESSION_HEADER, "")
    if not value:
        data = request.data if hasattr(request, "data") else {}
        value = data.get("SessionId") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def session_user(*, session_id: str) -> str:
    """The userid a SessionId belongs to; SessionError when it is missing, unknown or expired."""
    if not session_id:
        raise SessionError(SESSION_REQUIRED)
    if len(session_id) > 256:
        raise SessionError("SessionId: unknown or expired")
    if settings.SESSION_BACKEND == "remote":
        return _remote_session_user(session_id)
    return _local_session_user(session_id)


def _local_session_user(session_id: str) -> str:
    """An ApiSession's user, kept in the cache for SESSION_CACHE_SECONDS (never past its expiry):
    clients poll every few seconds, and the lookup was a third of a poll's cost. A session deleted
    in the admin keeps working until its cache entry ends."""
    key_hash = hash_session_id(session_id)
    cache_key = "session-local:" + key_hash
    userid = cache.get(cache_key)
    if userid is not None:
        return userid
    session = ApiSession.objects.filter(key_hash=key_hash).only("userid", "expires_at").first()
    if session is None or session.is_expired:
        raise SessionError("SessionId: unknown or expired")
    ttl = min(settings.SESSION_CACHE_SECONDS, int((session.expires_at - timezone.now()).total_seconds()))
    if ttl > 0:
        cache.set(cache_key, session.userid, ttl)
    return session.userid


def authenticate(request) -> str:
    """The userid of the request's session. On a view with SessionIdAuthentication it is
    request.user's; elsewhere (a view without authentication classes) the session is read here."""
    user = getattr(request, "user", None)
    if isinstance(user, SessionUser):
        return user.userid
    return session_user(session_id=session_id_from_request(request))


def _remote_session_user(session_id: str) -> str:
    cache_key = "session:" + hash_session_id(session_id)
    cached = cache.get(cache_key)
    if cached is not None:
        if cached == "":
            raise SessionError("SessionId: unknown or expired")
        return cached
    try:
        response = requests.post(
            settings.SESSION_VALIDATE_URL, json={"SessionId": session_id}, timeout=5
        )
    except requests.RequestException as exc:
        logger.warning("session validation endpoint unreachable: %s", type(exc).__name__)
        raise SessionError("SessionId: the session service is unreachable, try again") from exc
    userid = ""
    if response.status_code == 200:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if isinstance(body, dict) and body.get("ErrorCode", 0) in (0, None):
            userid = str(body.get("userid") or body.get("UserId") or body.get("user") or "")
    cache.set(cache_key, userid, settings.SESSION_CACHE_SECONDS)
    if not userid:
        raise SessionError("SessionId: unknown or expired")
    return userid


# --- DRF authentication -------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionUser:
    """`request.user` of a request with a valid session: the session's userid."""

    userid: str
    is_authenticated: ClassVar[bool] = True
    is_anonymous: ClassVar[bool] = False

    def __str__(self) -> str:
        return self.userid


class SessionIdAuthentication(BaseAuthentication):
    """The session of an API request: the X-Session-Id header, else the body's SessionId field.

    With the header, the body is not read to authenticate: an image upload has its size and its
    session checked before a byte of its body is read (ImageUploadApi.perform_authentication).
    Without it, the body is parsed here, once: DRF keeps request.data for the view, and the
    upload's parser reads no more than 64 kB before it has seen a valid SessionId field.

    A request that sends no session is anonymous (None): HasSession answers it 401 on the views
    that need one. A session that is sent and not valid is a 401 at once."""

    def authenticate(self, request):
        try:
            session_id = session_id_from_request(request)
            if not session_id:
                return None
            return SessionUser(session_user(session_id=session_id)), None
        except SessionError as exc:  # also the upload parser's, for a form without a valid session
            raise AuthenticationFailed(exc.message) from exc

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) without a session; the body is the endpoint's own JSON
        return 'SessionId header="X-Session-Id"'


class HasSession(BasePermission):
    """The default permission of the API views: a valid session. Without one, 401 with the
    message clients have always had (DRF's own would be "Authentication credentials were not
    provided."). A method the view does not have still answers 405, and OPTIONS stays open, as
    before the session was a permission."""

    def has_permission(self, request, view) -> bool:
        if isinstance(request.user, SessionUser):
            return True
        method = request.method.lower()
        if method == "options" or method not in view.http_method_names or not hasattr(view, method):
            return True
        raise NotAuthenticated(SESSION_REQUIRED)


class SessionIdAuthenticationScheme(OpenApiAuthenticationExtension):
    """The session in the OpenAPI schema: an apiKey in the X-Session-Id header, so that
    /api/docs/ has an Authorize button and sends the header on "Try it out"."""

    target_class = SessionIdAuthentication
    name = "SessionId"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Session-Id",
            "description": (
                "A SessionId from `manage.py createsession --user <userid>` or the admin's API sessions. "
                "Clients may send it as the `SessionId` field of a JSON body instead; when both are "
                "sent, the header is used."
            ),
        }
