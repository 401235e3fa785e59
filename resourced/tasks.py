from celery import shared_task
from django.conf import settings


@shared_task(name="resourced.ping")
def ping() -> dict:
    """A round trip through the broker and the result backend (used by tests and operators)."""
    return {"pong": True, "host": settings.WORKER_HOSTNAME}
