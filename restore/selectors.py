"""Reads: restore jobs, the answers of the API, and the callback bodies (the seeds' PutRestoreResult)."""

import json

from resourced.errors import NotFound
from restore.models import Callback, RestoreFile, RestoreJob

NETWORK_TEST_MESSAGE = "network test"


def restore_job_get(*, userid: str, task_id: str) -> RestoreJob:
    job = RestoreJob.objects.filter(userid=userid, task_id=task_id).first()
    if job is None:
        raise NotFound(f"task_id: no restore job {task_id!r}")
    return job


def restore_job_file_list_status(*, job: RestoreJob) -> list[dict]:
    """The callback's file_list_status: every file with its final code (type 1 only)."""
    return [{"file_name": f.file_name, "file_code": f.file_code} for f in job.files.order_by("position")]


def restore_job_answer(*, job: RestoreJob, message: str = "") -> dict:
    """The body of POST and GET /resource/v1/i/restore: the seeds' fields plus the job's state.

    While a file is not finished its file_code is null and its status says where it is.
    """
    files = [
        {"file_name": f.file_name, "file_code": f.file_code, "status": f.status, "key": f.key}
        for f in job.files.order_by("position")
    ]
    return {
        "code": 0,
        "message": message or job.message or job.status,
        "task_id": job.task_id,
        "status": job.status,
        "result_code": job.code,
        "file_dir": job.file_dir,
        "file_list_status": files,
        "callbacks": [
            {"type": cb.type, "delivery_id": str(cb.delivery_id), "state": cb.state, "attempts": cb.attempts}
            for cb in job.callbacks.order_by("type")
        ],
    }


def callback_body(*, job: RestoreJob, type: int) -> str:
    """The JSON of a callback, exactly as it is signed and sent on every attempt."""
    if type == Callback.Type.NETWORK_TEST:
        body = {"code": 0, "message": NETWORK_TEST_MESSAGE, "type": 0, "task_id": job.task_id,
                "file_dir": job.file_dir, "file_list_status": []}
    else:
        body = {"code": job.code, "message": job.message, "type": 1, "task_id": job.task_id,
                "file_dir": job.file_dir, "file_list_status": restore_job_file_list_status(job=job)}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def restore_job_unfinished_files(*, job: RestoreJob):
    return job.files.filter(status__in=[RestoreFile.Status.PENDING, RestoreFile.Status.RESTORING]).order_by("position")
