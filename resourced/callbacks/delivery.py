"""Delivering a callback row (a concrete resourced.models.CallbackBase): claim an attempt, send it
signed, record it (a CallbackDeliveryBase row), and say what comes next.

Every attempt may run twice (acks_late redelivery, a duplicate message): an attempt is numbered by
a compare-and-swap on the callback's attempt count, so only one message sends attempt n. Retries
are new messages with a countdown (the app's task raises self.retry), never a waiting worker; a
chain lost in a crash is found by `overdue` in the app's sweep.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from resourced.callbacks import http
from resourced.celery import max_countdown
from resourced.models import CallbackBase, CallbackDeliveryBase

logger = logging.getLogger(__name__)

# a callback whose next message should have come this long ago is sent again by the sweep
SWEEP_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class NextAttempt:
    attempt: int
    countdown: float


def backoff_seconds(attempt: int) -> float:
    """The wait after failed attempt number `attempt` (1-based): exponential, capped."""
    return min(settings.CALLBACK_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), settings.CALLBACK_BACKOFF_MAX_SECONDS)


Settled = Callable[[CallbackBase, str], None]


def deliver(callback: CallbackBase, *, attempt: int, deliveries: type[CallbackDeliveryBase],
            on_settled: Settled | None = None) -> NextAttempt | None:
    """Make delivery attempt number `attempt` of `callback` (a row the caller loaded); what to do
    next, or None when nothing is left to do (delivered, refused, failed, or the attempt was
    already claimed by another message). `on_settled(callback, state)` runs once it is settled."""
    model = type(callback)
    if callback.state != CallbackBase.State.PENDING or callback.attempts != attempt - 1:
        return None
    now = timezone.now()
    claimed = model.objects.filter(id=callback.id, state=CallbackBase.State.PENDING, attempts=attempt - 1).update(
        attempts=attempt, attempt_started_at=now, first_attempt_at=callback.first_attempt_at or now,
        deadline=callback.deadline or now + timedelta(hours=settings.CALLBACK_RETRY_HOURS),
    )
    if not claimed:
        return None
    callback.refresh_from_db()
    result = http.post_signed(
        callback.url,
        callback.body.encode("utf-8"),
        delivery_id=str(callback.delivery_id),
        attempt=attempt,
        secret=settings.CALLBACK_SECRET,
        timeout=settings.CALLBACK_TIMEOUT,
        allow_private=settings.CALLBACK_ALLOW_PRIVATE,
        excerpt_chars=settings.CALLBACK_RESPONSE_EXCERPT_CHARS,
        ca_file=settings.CALLBACK_CA_BUNDLE,
    )
    deliveries.objects.create(
        callback=callback, delivery_id=callback.delivery_id, attempt=attempt, outcome=result.outcome,
        http_status=result.http_status, response_excerpt=result.answer, address=result.address,
        duration_ms=result.duration_ms, error=result.error, started_at=now,
    )
    log = logger.info if result.delivered else logger.warning
    log("callback %s (%s) attempt %d: %s %s", callback.delivery_id, callback.subject, attempt, result.outcome,
        result.error)
    if result.delivered:
        settle(callback, CallbackBase.State.DELIVERED, on_settled, delivered_at=timezone.now(), last_error="")
        return None
    if result.outcome == CallbackDeliveryBase.Outcome.REFUSED:
        settle(callback, CallbackBase.State.REFUSED, on_settled, last_error=result.error)
        return None
    wait = backoff_seconds(attempt)
    if timezone.now() + timedelta(seconds=wait) > callback.deadline:
        settle(callback, CallbackBase.State.FAILED, on_settled, last_error=result.error)
        return None
    model.objects.filter(id=callback.id).update(last_error=result.error,
                                                next_attempt_at=timezone.now() + timedelta(seconds=wait))
    return NextAttempt(attempt + 1, min(wait, max_countdown()))


def settle(callback: CallbackBase, state: str, on_settled: Settled | None = None, **fields) -> None:
    type(callback).objects.filter(id=callback.id).update(state=state, next_attempt_at=None, **fields)
    if on_settled is not None:
        on_settled(callback, state)


def redeliver(callback: CallbackBase) -> int:
    """Make the callback pending again (an operator's action): same delivery id and body, a fresh
    retry window; the number of the attempt to send next."""
    model = type(callback)
    model.objects.filter(id=callback.id).update(
        state=CallbackBase.State.PENDING, deadline=timezone.now() + timedelta(hours=settings.CALLBACK_RETRY_HOURS),
        next_attempt_at=timezone.now(), delivered_at=None,
    )
    return model.objects.get(id=callback.id).attempts + 1


def overdue(callbacks: QuerySet, *, now) -> list[CallbackBase]:
    """Of `callbacks` (an app's callback rows, with what its caller reads selected), the pending ones
    whose next message is lost: never sent after SWEEP_GRACE, or a next attempt overdue by
    SWEEP_GRACE whose latest attempt is not still in flight."""
    lease = timedelta(seconds=settings.CALLBACK_TIMEOUT) + SWEEP_GRACE
    lost = []
    for callback in callbacks.filter(state=CallbackBase.State.PENDING, created_at__lt=now - SWEEP_GRACE):
        if callback.attempts:
            late = callback.next_attempt_at is None or callback.next_attempt_at < now - SWEEP_GRACE
            in_flight = callback.attempt_started_at and callback.attempt_started_at > now - lease
            if not late or in_flight:
                continue
        lost.append(callback)
    return lost
