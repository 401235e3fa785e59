"""Thin Celery tasks of the restore flow; restore/services.py does the work.

Names matter: ``restore.callbacks.*`` is routed to the ``callbacks`` queue and ``restore.*`` to
``restore`` (restore/queues.py), and restore/services.py sends them by name. Arguments are ids and numbers. Waiting is never done inside a
task: the watch loop and callback retries are new messages with a countdown.
"""

from celery import shared_task

from resourced.s3 import TRANSIENT_EXCEPTIONS
from restore import services

RETRY = {"autoretry_for": TRANSIENT_EXCEPTIONS, "retry_backoff": True, "retry_backoff_max": 300, "max_retries": 8}


@shared_task(bind=True, name="restore.start", **RETRY)
def restore_start(self, job_id: int) -> None:
    services.restore_job_start(job_id=job_id)


@shared_task(bind=True, name="restore.check", **RETRY)
def restore_check(self, job_id: int, seq: int) -> None:
    services.restore_job_check(job_id=job_id, seq=seq)


@shared_task(bind=True, name="restore.copy", **RETRY)
def restore_copy(self, job_id: int) -> None:
    services.restore_job_copy(job_id=job_id)


@shared_task(bind=True, name="restore.sweep")
def restore_sweep(self) -> dict:
    """Periodic (django-celery-beat): pick up restore flows and callbacks whose next message was lost."""
    return services.restore_sweep()


@shared_task(bind=True, name="restore.callbacks.deliver", max_retries=None)
def deliver_callback(self, callback_id: int, attempt: int = 1) -> None:
    """One delivery attempt; the next one (backoff, bounded by CALLBACK_RETRY_HOURS) as a retry."""
    following = services.callback_deliver(callback_id=callback_id, attempt=attempt)
    if following is not None:
        raise self.retry(args=[callback_id, following.attempt], countdown=following.countdown)
