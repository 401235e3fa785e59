"""Log records carry the id of the export or task they belong to.

``bind_task_id`` sets it for the code running a pipeline step; ``TaskIdFilter`` adds it to every
record (``-`` outside a task), so every line of a pipeline can be found by its TaskId.
"""

import contextvars
import logging
from contextlib import contextmanager

_task_id: contextvars.ContextVar[str] = contextvars.ContextVar("resourced_task_id", default="-")


@contextmanager
def bind_task_id(task_id: str):
    token = _task_id.set(str(task_id))
    try:
        yield
    finally:
        _task_id.reset(token)


def current_task_id() -> str:
    return _task_id.get()


class TaskIdFilter(logging.Filter):
    """Adds `task_id`: the bound id, or inside a Celery task of an export or restore, its first
    argument (the export's TaskId, the job's task_id)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "task_id"):
            record.task_id = _task_id.get()
            if record.task_id == "-":
                record.task_id = _celery_task_subject()
        return True


def _celery_task_subject() -> str:
    from celery import current_task

    if not current_task:  # a proxy: false outside a task
        return "-"
    task = current_task._get_current_object()
    if not task.request or not task.request.args:
        return "-"
    if (task.name or "").startswith(("exports.", "restore.")):
        return str(task.request.args[0])
    return "-"
