"""API client sessions (docs/api.md §5): a SessionId in the body or the X-Session-Id header.

`local` checks ApiSession rows issued by `manage.py createsession`; `remote` asks
SESSION_VALIDATE_URL and caches the answer for SESSION_CACHE_SECONDS.
"""

import logging
from datetime import timedelta

import requests
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from resourced.errors import ServiceError
from resourced.models import ApiSession, hash_session_id, new_session_id

logger = logging.getLogger(__name__)

SESSION_HEADER = "HTTP_X_SESSION_ID"


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
    data = request.data if hasattr(request, "data") else {}
    value = data.get("SessionId") if isinstance(data, dict) else None
    if not value:
        value = request.META.get(SESSION_HEADER, "")
    return value if isinstance(value, str) else ""


def session_user(*, session_id: str) -> str:
    """The userid a SessionId belongs to; SessionError when it is missing, unknown or expired."""
    if not session_id:
        raise SessionError("SessionId: required (in the body or the X-Session-Id header)")
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
