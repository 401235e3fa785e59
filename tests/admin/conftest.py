"""Exports in every state, made through the same services the API and the pipeline use."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from exports.models import Export


def make_export(**fields) -> Export:
    """An Export row as the pipeline leaves it; fields override."""
    peer = fields.pop("peer_id", "PEER" + uuid.uuid4().hex[:6].upper())
    values = dict(
        idempotency_key=uuid.uuid4().hex,
        service_caller="mma",
        userid=f"user-{uuid.uuid4().hex[:6]}@example.com",
        live_path=f"mp4/{peer}/rec-1/1/stream.mpd",
        peer_id=peer,
        file_name="",
        start_pos=1_700_000_004_000,
        start_time_ms=4000,
        duration_ms=4000,
        source_bucket="recordings",
        dest_bucket="export",
    )
    values.update(fields)
    return Export.objects.create(**values)


def make_ready(**fields) -> Export:
    now = timezone.now()
    peer = fields.pop("peer_id", "PEER" + uuid.uuid4().hex[:6].upper())
    key = f"export/{peer}/{peer}_rec-1_1700000004000_4000.ts"
    values = dict(
        peer_id=peer, status=Export.Status.READY, stage=Export.Stage.DONE, progress=100, error_code=5,
        error_message="ready", video_key=key, video_path="/" + key,
        image_path=f"/{peer}/{peer}_rec-1_1700000004000_4000.jpg", output_bytes=123_456, bytes_downloaded=200_000,
        bytes_needed=200_000, output_duration_ms=4000.0, lack_ms=0, host="testhost",
        timings={"download": 0.4, "cut": 0.1, "encode": 0.0, "thumbnail": 0.05, "upload": 0.2},
        step_hosts={s: "testhost" for s in ("download", "cut", "encode", "thumbnail", "upload")},
        started_at=now - timedelta(seconds=2), finished_at=now,
    )
    values.update(fields)
    return make_export(**values)


def make_failed(code: int = -6, message: str = "destination: AccessDenied", **fields) -> Export:
    values = dict(status=Export.Status.FAILED, stage=Export.Stage.FAILED, error_code=code, error_message=message,
                  started_at=timezone.now() - timedelta(seconds=3), finished_at=timezone.now())
    values.update(fields)
    return make_export(**values)


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("ops", "ops@example.com", "ops-password-1")


@pytest.fixture
def staff_client(client, superuser):
    client.force_login(superuser)
    return client
