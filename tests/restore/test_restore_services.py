"""The flow's services called directly (no worker) against the real S3 endpoint: duplicate and stale
messages are harmless, the watch loop reschedules itself with a bounded countdown."""

import pytest

from restore import services
from restore.models import Callback, RestoreFile, RestoreJob
from tests.conftest import hold_restores_forever

pytestmark = pytest.mark.django_db


def make_job(bucket: str, files: list[str]) -> RestoreJob:
    job, _ = services.restore_job_create(userid="tester", task_id="svc-1", files=files, file_dir="out",
                                         callback_url="https://client.example/cb", days=1, tier="Expedited")
    RestoreJob.objects.filter(id=job.id).update(bucket=bucket, dest_bucket=bucket)
    job.refresh_from_db()
    return job


@pytest.fixture
def enqueued(monkeypatch):
    """Every task message the services send: (task name, args, countdown)."""
    from resourced.celery import app

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, countdown=None, **options: sent.append(
        (name, args, countdown)))
    return sent


def test_duplicate_and_stale_messages_do_not_fork_the_watch_loop(
    s3, bucket, archived_objects, restore_pace, enqueued, django_capture_on_commit_callbacks
):
    archived_objects(bucket, {"cold.ts": (b"c", "DEEP_ARCHIVE")}, in_progress_seconds=0.5)
    job = make_job(bucket, ["cold.ts"])

    with django_capture_on_commit_callbacks(execute=True):
        services.restore_job_start(job_id=job.id)
    hold_restores_forever(restore_pace, s3, bucket, "cold.ts")

    job.refresh_from_db()
    assert (job.status, job.check_seq) == ("restoring", 1)
    assert enqueued == [("restore.callbacks.deliver", [Callback.objects.get(job=job, type=0).id, 1], None),
                        ("restore.check", [job.id, 1], 1)]
    file = job.files.get()
    assert file.restore_requested and file.status == RestoreFile.Status.RESTORING

    # the start message delivered twice: no second network test; its pass takes over the loop
    # (check 2), so the check message of pass 1 is now stale
    with django_capture_on_commit_callbacks(execute=True):
        services.restore_job_start(job_id=job.id)
    assert Callback.objects.filter(job=job).count() == 1
    assert enqueued[2:] == [("restore.check", [job.id, 2], 1)]
    with django_capture_on_commit_callbacks(execute=True):
        services.restore_job_check(job_id=job.id, seq=0)
        services.restore_job_check(job_id=job.id, seq=1)
    assert len(enqueued) == 3 and RestoreJob.objects.get(id=job.id).check_seq == 2
    # the live one goes on, and only it
    with django_capture_on_commit_callbacks(execute=True):
        services.restore_job_check(job_id=job.id, seq=2)
        services.restore_job_check(job_id=job.id, seq=2)  # delivered twice
    assert enqueued[3:] == [("restore.check", [job.id, 3], 1)]
    job.refresh_from_db()
    assert (job.status, job.check_seq, job.checks) == ("restoring", 3, 3)


def test_the_check_countdown_never_reaches_the_visibility_timeout(settings, enqueued):
    settings.RESTORE_POLL_SECONDS = 10 * 24 * 3600
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS, visibility_timeout=3600)
    services._enqueue_check(7, 3)
    assert enqueued == [("restore.check", [7, 3], 1800)]


def test_callback_backoff_is_exponential_and_capped(settings):
    settings.CALLBACK_BACKOFF_BASE_SECONDS = 30
    settings.CALLBACK_BACKOFF_MAX_SECONDS = 3600
    from resourced.callbacks.delivery import backoff_seconds

    assert [backoff_seconds(n) for n in (1, 2, 3, 4, 8, 20)] == [30, 60, 120, 240, 3600, 3600]


def test_the_sweeper_picks_up_flows_whose_next_message_was_lost(settings, enqueued):
    from datetime import timedelta

    from django.utils import timezone

    long_ago = timezone.now() - timedelta(hours=3)
    recently = timezone.now() - timedelta(seconds=5)

    def job(task_id, status, updated_at, **fields):
        made, _ = services.restore_job_create(userid="u", task_id=task_id, files=["a.ts"], file_dir="out",
                                              callback_url="https://client.example/cb", days=1, tier="Bulk")
        RestoreJob.objects.filter(id=made.id).update(status=status, created_at=long_ago, updated_at=updated_at, **fields)
        return made

    lost_start = job("lost-start", "queued", long_ago)
    lost_check = job("lost-check", "restoring", long_ago, check_seq=4)
    lost_copy = job("lost-copy", "copying", long_ago)
    job("alive-check", "restoring", recently)
    done = job("done", "done", long_ago)

    def callback(owner, type, **fields):
        made = Callback.objects.create(job=owner, type=type, url=owner.callback_url, body="{}")
        Callback.objects.filter(id=made.id).update(created_at=long_ago, **fields)
        return made

    never_sent = callback(done, 0)  # its first message never reached the broker
    crashed = callback(lost_copy, 0, attempts=2, attempt_started_at=long_ago, next_attempt_at=long_ago)
    retrying = callback(lost_check, 0, attempts=2, attempt_started_at=long_ago,
                        next_attempt_at=timezone.now() + timedelta(minutes=10))
    waiting = callback(lost_check, 1)  # waits for `retrying`, the network test
    delivered = callback(lost_start, 0, attempts=1, state="delivered", attempt_started_at=long_ago)

    counts = services.restore_sweep()
    assert counts == {"start": 1, "check": 1, "copy": 1, "deliver": 2}
    assert sorted(enqueued, key=str) == sorted([
        ("restore.start", [lost_start.id], None),
        ("restore.check", [lost_check.id, 4], 1),
        ("restore.copy", [lost_copy.id], None),
        ("restore.callbacks.deliver", [never_sent.id, 1], None),
        ("restore.callbacks.deliver", [crashed.id, 3], None),
    ], key=str)
    assert retrying and waiting and delivered
