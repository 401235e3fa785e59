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
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "task_id"):
            record.task_id = _task_id.get()
        return True
