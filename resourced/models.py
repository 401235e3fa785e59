import hashlib
import secrets

from django.db import models
from django.utils import timezone


def new_session_id() -> str:
    return secrets.token_hex(16).upper()


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


class ApiSession(models.Model):
    """A SessionId issued to an API client by the `local` session backend.

    Only a SHA-256 of the id is stored: the id itself is shown once, when it is issued.
    """

    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    key_prefix = models.CharField(max_length=8, editable=False, help_text="first characters, to tell sessions apart")
    userid = models.CharField(max_length=255, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        verbose_name = "API session"

    def __str__(self) -> str:
        return f"{self.key_prefix}… {self.userid}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()
