"""A clip never replaces an object its export did not write, even one written between the look
(HEAD) and the write: the write is conditional (If-None-Match: *, on the PUT and on the
completion of a multipart upload), against the real S3 endpoint."""

from pathlib import Path

import pytest

from exports import steps
from exports.paths import ExportPaths
from resourced.s3 import ObjectExists, S3Location, upload_if_absent


def a_file(tmp_path: Path, size: int, fill: bytes = b"c") -> Path:
    path = tmp_path / f"clip-{size}.ts"
    path.write_bytes(fill * size)
    return path


@pytest.mark.parametrize("size", [1000, 11 * 1024 * 1024])  # one PUT; multipart (5 MiB parts)
def test_an_object_already_there_is_never_replaced(s3, bucket, tmp_path, settings, size):
    settings.S3_MULTIPART_THRESHOLD = settings.S3_MULTIPART_CHUNKSIZE = 5 * 1024 * 1024
    s3.put_object(Bucket=bucket, Key="clips/a.ts", Body=b"someone else's")
    location = S3Location(bucket=bucket)
    sent = []
    with pytest.raises(ObjectExists):
        upload_if_absent(location=location, key="clips/a.ts", path=a_file(tmp_path, size), extra={},
                         on_bytes=sent.append)
    assert s3.get_object(Bucket=bucket, Key="clips/a.ts")["Body"].read() == b"someone else's"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], "an unfinished upload is aborted"

    upload_if_absent(location=location, key="clips/b.ts", path=a_file(tmp_path, size), extra={"ContentType": "video/mp2t"},
                     on_bytes=sent.append)
    head = s3.head_object(Bucket=bucket, Key="clips/b.ts")
    assert head["ContentLength"] == size and head["ContentType"] == "video/mp2t"
    upload_if_absent(location=location, key="clips/a.ts", path=a_file(tmp_path, size, b"d"), extra={},
                     overwrite=True)  # its own object (a redelivered upload) is written again
    assert s3.head_object(Bucket=bucket, Key="clips/a.ts")["ContentLength"] == size


def test_an_object_written_between_the_look_and_the_write_takes_the_next_name(s3, bucket, tmp_path, monkeypatch):
    paths = ExportPaths(work_dir=tmp_path, file_name="clip.ts", video_key="export/PEER/clip.ts",
                        content_type="video/mp2t", image_dir="PEER", image_name="clip.jpg")
    paths.output.parent.mkdir(parents=True, exist_ok=True)
    paths.output.write_bytes(b"our clip")
    location = S3Location(bucket=bucket)
    free_name = steps.free_name

    def racing_free_name(**kwargs):
        # another writer puts an object at the name right after it was found free
        n, ours = free_name(**kwargs)
        if n == 0:
            s3.put_object(Bucket=bucket, Key=steps.numbered_name(kwargs["key"], n), Body=b"the other writer's")
        return n, ours

    monkeypatch.setattr(steps, "free_name", racing_free_name)
    done = []
    uploaded = steps.upload(paths=paths, location=location, writer="t1", on_progress=done.append)
    assert uploaded.video_key == "export/PEER/clip_1.ts"
    assert s3.get_object(Bucket=bucket, Key="export/PEER/clip.ts")["Body"].read() == b"the other writer's"
    assert s3.get_object(Bucket=bucket, Key="export/PEER/clip_1.ts")["Body"].read() == b"our clip"
    assert done[-1] == 1.0
