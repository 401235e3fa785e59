"""The Celery app: configuration, and the registry where each app declares its queues and routes.

Each app declares its own queues and routes in its ``queues.py`` (imported by its AppConfig.ready),
Mayan EDMS style: this module knows no app. A worker's ``-Q`` list is the only thing that differs
between worker kinds. A queue declared ``host_bound`` also has one queue per worker host
(``<queue>@<host>``) that only the workers of that host consume: after download, the rest of an
export is sent there, so intermediate files never cross hosts.
"""

import fnmatch
import os
from dataclasses import dataclass

from celery import Celery
from celery.signals import celeryd_after_setup
from django.conf import settings
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "resourced.settings.base")

QUEUE_DEFAULT = "default"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    host_bound: bool = False
    purpose: str = ""


# every app's client callbacks (resourced.callbacks): one queue, so that a slow client never delays media work
QUEUE_CALLBACKS = "callbacks"

_queues: dict[str, QueueSpec] = {
    QUEUE_DEFAULT: QueueSpec(QUEUE_DEFAULT, purpose="periodic and small tasks"),
    QUEUE_CALLBACKS: QueueSpec(QUEUE_CALLBACKS, purpose="signed client callbacks (restore results, export callbacks)"),
}
_routes: list[tuple[str, str]] = []  # (task name pattern, queue), first match wins


def declare_queue(name: str, *, host_bound: bool = False, purpose: str = "") -> str:
    """Declare a queue (idempotent); returns its name."""
    _queues[name] = QueueSpec(name, host_bound=host_bound, purpose=purpose)
    app.conf.task_queues = [_declare(queue) for queue in _queues]
    return name


def route_tasks(pattern: str, queue: str) -> None:
    """Send tasks whose name matches `pattern` (fnmatch) to `queue`; earlier routes win."""
    if queue not in _queues:
        raise ValueError(f"queue {queue} is not declared")
    if (pattern, queue) not in _routes:
        _routes.append((pattern, queue))


def declared_queues() -> tuple[str, ...]:
    """Every shared queue the apps declared (not the per-host ones)."""
    return tuple(_queues)


def schedule_task(entry: str, task: str, *, every_seconds: float) -> None:
    """A periodic task for Celery beat (DatabaseScheduler copies it into the database at start)."""
    app.conf.beat_schedule = {**(app.conf.beat_schedule or {}), entry: {"task": task, "schedule": every_seconds}}


def max_countdown() -> int:
    """The longest countdown a task may be sent with: past the broker's visibility timeout, Redis
    would deliver the message twice."""
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout") or 3600
    return max(1, int(visibility) // 2)


def host_bound_queues() -> tuple[str, ...]:
    return tuple(name for name, spec in _queues.items() if spec.host_bound)


def host_queue(queue: str, host: str) -> str:
    """The queue of `queue` that only the workers on `host` consume."""
    return f"{queue}@{host}"


def queue_for_task(name: str) -> str:
    for pattern, queue in _routes:
        if fnmatch.fnmatchcase(name, pattern):
            return queue
    return QUEUE_DEFAULT


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router: the queue declared for this task name (an explicit queue= wins, as in Celery)."""
    return {"queue": queue_for_task(name)}


def _declare(queue: str) -> Queue:
    # on the default exchange with the queue's name as routing key: the exchange name stays valid
    # for every broker whatever the queue's name ('@' in host queues)
    return Queue(queue, routing_key=queue)


app = Celery("resourced")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    event_serializer="json",
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # no STARTED row in the result backend: one database write less per task (three per export);
    # Flower still shows a task started, from the worker's events
    task_track_started=False,
    task_default_queue=QUEUE_DEFAULT,
    task_queues=[_declare(queue) for queue in _queues],
    task_create_missing_queues=True,
    task_routes=(route_task,),
    worker_send_task_events=True,
    task_send_sent_event=True,
    broker_connection_retry_on_startup=True,
    result_expires=7 * 24 * 3600,
)
app.autodiscover_tasks()


@celeryd_after_setup.connect
def _consume_host_queues(sender, instance, **kwargs):
    """Add this host's own queues to the worker, whatever its -Q list says: consume the host queue
    of each host-bound queue it consumes, declare the others (the other worker kind of this host
    consumes them; this one sends to them)."""
    host = settings.WORKER_HOSTNAME
    queues = instance.app.amqp.queues
    consumed = set(queues.consume_from or queues)
    for queue in host_bound_queues():
        if queue in consumed:
            queues.select_add(host_queue(queue, host))
        else:
            queues.add(_declare(host_queue(queue, host)))
