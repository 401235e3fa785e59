"""The restore app's queues and routes (registered with resourced.celery)."""

from resourced.celery import QUEUE_CALLBACKS, declare_queue, route_tasks

QUEUE_RESTORE = declare_queue("restore", purpose="archive restores: request, watch, copy")

route_tasks("restore.callbacks.*", QUEUE_CALLBACKS)
route_tasks("restore.*", QUEUE_RESTORE)
