import hashlib
import secrets
import uuid

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


class CallbackBase(models.Model):
    """One message to a client's callback URL, delivered (and retried) under one delivery id
    (resourced.callbacks.delivery). Each app's concrete model adds what the message reports on."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # retried until the deadline without success
        REFUSED = "refused"  # the SSRF guard refused the address; never retried

    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    url = models.CharField(max_length=2048)
    body = models.TextField(help_text="the exact JSON that is signed and sent on every attempt")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    attempt_started_at = models.DateTimeField(null=True, blank=True, help_text="when the latest attempt was claimed")
    deadline = models.DateTimeField(null=True, blank=True, help_text="no retry after this (CALLBACK_RETRY_HOURS)")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True


class CallbackDeliveryBase(models.Model):
    """One attempt to deliver a callback; the concrete model adds the `callback` foreign key."""

    class Outcome(models.TextChoices):
        DELIVERED = "delivered"  # 2xx and {"code": 0}
        REJECTED = "rejected"  # 2xx but the answer is not {"code": 0}
        HTTP_ERROR = "http_error"  # any other status, redirects included (never followed)
        TIMEOUT = "timeout"
        CONNECTION_ERROR = "connection_error"
        REFUSED = "refused"  # SSRF guard: no connection was made

    delivery_id = models.UUIDField(db_index=True)
    attempt = models.PositiveIntegerField()
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    address = models.CharField(max_length=64, blank=True, help_text="the IP address connected to")
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.attempt} {self.outcome}"
