"""Recordings in the real S3 endpoint, and a client that posts and polls exports."""

import base64
import json
import os
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests import mediagen

ORIGIN_MS = int(mediagen.DEFAULT_ORIGIN.timestamp() * 1000)


def upload_dir(s3, bucket: str, local_dir: str, prefix: str) -> None:
    for root, _dirs, names in os.walk(local_dir):
        for name in names:
            path = Path(root) / name
            key = f"{prefix}/{path.relative_to(local_dir).as_posix()}"
            s3.upload_file(str(path), bucket, key)


@pytest.fixture(scope="session")
def recordings_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("recordings")


@pytest.fixture(scope="session")
def uploaded_recordings(s3_server, recordings_dir):
    """Recordings uploaded once per session into the default source bucket, by name."""
    from resourced.s3 import default_client

    s3 = default_client()
    bucket = settings.SOURCE_DEFAULT_BUCKET
    made: dict[str, str] = {}

    def get(name: str, kind: str = "dash", **options) -> str:
        if name in made:
            return made[name]
        local = recordings_dir / name
        peer = "PEER" + uuid.uuid4().hex[:8].upper()
        recording = f"rec-{name}"
        if kind == "dash":
            manifest = mediagen.make_dash(str(local), **options)
            purpose = "mp4"
        else:
            manifest = mediagen.make_hls(str(local), **options)
            purpose = "ts"
        prefix = f"{purpose}/{peer}/{recording}/1"
        upload_dir(s3, bucket, str(local), prefix)
        made[name] = f"{prefix}/{Path(manifest).name}"
        return made[name]

    return get


def export_body(live_path: str, session_id: str, **overrides) -> dict:
    body = {
        "_ServiceName": "resourceservice",
        "_UrlPath": "export-to-s3dir",
        "_Version": 1,
        "ServiceCaller": "mma",
        "StartPos": ORIGIN_MS + 4000,
        "StartTime": "00:00:04",
        "Duration": 4000,
        "LivePath": live_path,
        "SessionId": session_id,
        "export_type": 0,
        "userid": f"user-{uuid.uuid4().hex[:8]}@example.com",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def storage_info(entries: list[dict]) -> str:
    return base64.b64encode(json.dumps(entries).encode()).decode()


def poll(api, task_id: str, session_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(f"/resource/v1/i/export-to-s3dir/{task_id}", HTTP_X_SESSION_ID=session_id).json()
        if body["ErrorCode"] != 1:
            return body
        time.sleep(0.3)
    raise AssertionError(f"export {task_id} still processing after {timeout} s: {body}")


def submit(api, body) -> dict:
    """POST export-to-s3dir: the first answer, which must be ErrorCode 1 (accepted)."""
    response = api.post("/resource/v1/i/export-to-s3dir", body, format="json")
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert answer["ErrorCode"] == 1, answer
    return answer
