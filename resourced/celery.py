"""The Celery app: configuration, queues and routes, declared once.

A worker's ``-Q`` list is the only thing that differs between worker kinds. Every worker also
consumes its own host queues (``media.io@<host>``, ``media.cpu@<host>``): after download, the rest
of an export's chain is sent there, so intermediate files never cross hosts.
"""

import os

from celery import Celery
from celery.signals import celeryd_after_setup
from django.conf import settings
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "resourced.settings.base")

QUEUE_DEFAULT = "default"
QUEUE_MEDIA_IO = "media.io"
QUEUE_MEDIA_CPU = "media.cpu"
QUEUE_RESTORE = "restore"
QUEUE_CALLBACKS = "callbacks"
SHARED_QUEUES = (QUEUE_DEFAULT, QUEUE_MEDIA_IO, QUEUE_MEDIA_CPU, QUEUE_RESTORE, QUEUE_CALLBACKS)
MEDIA_QUEUES = (QUEUE_MEDIA_IO, QUEUE_MEDIA_CPU)


def host_queue(queue: str, host: str) -> str:
    """The queue of `queue` that only the worker on `host` consumes."""
    return f"{queue}@{host}"


app = Celery("resourced")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _prepare_embedded_broker() -> None:
    """The filesystem transport needs its folders before the first message."""
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
            os.makedirs(options[key], exist_ok=True)


_prepare_embedded_broker()
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    event_serializer="json",
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_track_started=True,
    task_default_queue=QUEUE_DEFAULT,
    task_queues=[Queue(name, routing_key=name) for name in SHARED_QUEUES],
    task_create_missing_queues=True,
    task_routes={
        "exports.download": {"queue": QUEUE_MEDIA_IO},
        "exports.cut": {"queue": QUEUE_MEDIA_CPU},
        "exports.encode": {"queue": QUEUE_MEDIA_CPU},
        "exports.thumbnail": {"queue": QUEUE_MEDIA_IO},
        "exports.upload": {"queue": QUEUE_MEDIA_IO},
        "exports.getthumbnail": {"queue": QUEUE_MEDIA_CPU},
        "exports.*": {"queue": QUEUE_DEFAULT},
        "restore.callbacks.*": {"queue": QUEUE_CALLBACKS},
        "restore.*": {"queue": QUEUE_RESTORE},
    },
    worker_send_task_events=True,
    task_send_sent_event=True,
    broker_connection_retry_on_startup=True,
    result_expires=7 * 24 * 3600,
    beat_schedule={
        "exports-sweep-stale": {"task": "exports.sweep_stale", "schedule": settings.EXPORT_SWEEP_INTERVAL_SECONDS},
    },
)
app.autodiscover_tasks()


@celeryd_after_setup.connect
def _consume_host_queues(sender, instance, **kwargs):
    """Add this host's own media queues to the worker, whatever its -Q list says: consume the host
    queue of each media queue it consumes, declare the other."""
    host = settings.WORKER_HOSTNAME
    consumed = set(instance.app.amqp.queues.consume_from or instance.app.amqp.queues)
    for queue in MEDIA_QUEUES:
        if queue in consumed:
            instance.app.amqp.queues.select_add(host_queue(queue, host))
        else:
            # declared (on the default exchange) without consuming it: the other worker of this host
            # consumes it, and an auto-created queue would get an exchange named after it, which the
            # embedded filesystem broker refuses ('@')
            instance.app.amqp.queues.add(host_queue(queue, host))
