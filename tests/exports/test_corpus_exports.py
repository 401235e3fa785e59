"""Recordings made by real packagers (tests/corpus.py) exported end to end through
export-to-s3dir (the real API, a Celery worker, the S3 test endpoint), and the ranged download
the export pipeline does for recordings whose segments are byte ranges."""

import os
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from exports.media import KEYFRAME_AUDIO_HEAD_MS, Part, load_recording, select_segments
from exports.models import Export
from tests import corpus, mediagen
from tests.exports.conftest import export_body, poll, upload_dir

URL = "/resource/v1/i/export-to-s3dir"


# --------------------------------------------------------------------------- download_objects with byte ranges
def test_download_objects_fetches_only_the_byte_ranges(s3, bucket, tmp_path):
    from resourced.s3 import S3Location, download_objects

    data = bytes(range(256)) * 40  # 10240 bytes
    s3.put_object(Bucket=bucket, Key="rec/all.mp4", Body=data)
    s3.put_object(Bucket=bucket, Key="rec/whole.ts", Body=b"x" * 500)
    items = [Part("rec/all.mp4", (0, 99)), Part("rec/all.mp4", (100, 4195)), "rec/whole.ts",
             Part("rec/all.mp4", (20000, 20099)), Part("rec/nope.mp4", (0, 9)), "rec/nope.ts"]
    done = []
    report = download_objects(location=S3Location(bucket=bucket), keys=items, path_for=lambda n: tmp_path / n,
                              concurrency=4, on_object=done.append)
    assert sorted(report.missing) == ["rec/all.mp4@20000-20099", "rec/nope.mp4@0-9", "rec/nope.ts"]
    assert (tmp_path / "rec/all.mp4@0-99").read_bytes() == data[:100]
    assert (tmp_path / "rec/all.mp4@100-4195").read_bytes() == data[100:4196]
    assert (tmp_path / "rec/whole.ts").read_bytes() == b"x" * 500
    assert not (tmp_path / "rec/all.mp4").exists()
    assert report.files == 3 and report.bytes == 100 + 4096 + 500 and sorted(done) == [1, 2, 3]


# --------------------------------------------------------------------------- end to end
pytestmark_db = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="session")
def uploaded_corpus(s3_server):
    """Corpus recordings uploaded once per session into the default source bucket, by name."""
    from resourced.s3 import default_client

    s3 = default_client()
    made: dict[str, tuple[str, corpus.Built]] = {}

    def get(name: str) -> tuple[str, corpus.Built]:
        if name not in made:
            reason = corpus.missing_tool(name)
            if reason:
                pytest.skip(reason)
            built = corpus.build(name)
            peer = "PEER" + uuid.uuid4().hex[:8].upper()
            purpose = "mp4" if built.entry.manifest.endswith(".mpd") else "ts"
            prefix = f"{purpose}/{peer}/rec-{name}/1"
            upload_dir(s3, settings.SOURCE_DEFAULT_BUCKET, built.dir, prefix)
            made[name] = (f"{prefix}/{built.entry.manifest}", built)
        return made[name]

    return get


def media_bytes(built: corpus.Built, start_ms: float, duration_ms: float, *, audio_head_ms: float = 0.0) -> int | None:
    """Bytes of the media a clip needs, from the manifest (byte-range recordings); a keyframe cut
    also needs the audio from the keyframe before the start (audio_head_ms)."""
    root = Path(built.root)
    rec = load_recording(lambda k: (root / k).read_bytes(), built.manifest_key,
                         fetch_range=lambda k, a, b: (root / k).read_bytes()[a:b + 1])
    return select_segments(rec, start_ms, start_ms + duration_ms, audio_head_ms=audio_head_ms).media_bytes()


@pytestmark_db
@pytest.mark.parametrize("name, export_type", [
    ("ffmpeg-hls-single", 0),
    ("edited-ondemand", 0),
    ("edited-ondemand", 1),
    ("edited-multiperiod", 0),
    ("edited-multiperiod", 1),
    ("gst-dashsink", 0),
    ("edited-hls-mixed", 0),
    ("edited-hls-mixed", 1),
    ("edited-hls-mixed-fmp4-first", 0),
    ("ffmpeg-hls-aes", 0),
    ("ffmpeg-hls-aes-rekey", 1),
    ("edited-hls-aes-ranges", 0),
])
def test_corpus_recording_exports(api, s3, session_id, celery_worker, uploaded_corpus, tmp_path, name, export_type):
    live_path, built = uploaded_corpus(name)
    # no wall-clock origin in these recordings: StartTime (5 s) counts from their first segment
    body = export_body(live_path, session_id, export_type=export_type, ExportFormat="ts", StartTime="00:00:05",
                       Duration=3000, CutMode="keyframe" if export_type == 0 else None)
    response = api.post(URL, body, format="json")
    assert response.status_code == 200 and response.json()["ErrorCode"] == 1, response.json()
    answer = poll(api, response.json()["TaskId"], session_id)
    assert answer["ErrorCode"] == 5, answer
    assert answer["LackLength"] == 0

    key = answer["VideoPath"].lstrip("/")
    clip = str(tmp_path / Path(key).name)
    s3.download_file(settings.EXPORT_DEFAULT_BUCKET, key, clip)
    stamps = mediagen.stamps_in(clip)
    if export_type == 0:
        assert stamps[0] == (4, 0)  # the keyframe at or before 5 s
    else:
        assert stamps[0] == (5, 0)
    assert mediagen.has_audio(clip)
    index = [s * 25 + f for s, f in stamps]
    assert index == list(range(index[0], index[0] + len(index)))  # every frame, in order

    if built.entry.byte_ranges:
        export = Export.objects.get(task_id=answer["TaskId"])
        media = media_bytes(built, 5000, 3000, audio_head_ms=KEYFRAME_AUDIO_HEAD_MS if export_type == 0 else 0.0)
        media_dir = os.path.dirname(os.path.join(built.dir, built.entry.manifest))
        files = sum(os.path.getsize(os.path.join(media_dir, n)) for n in os.listdir(media_dir)
                    if n.endswith((".mp4", ".ts", ".m4s")))
        assert export.bytes_downloaded <= 1.05 * media, (export.bytes_downloaded, media)
        assert export.bytes_downloaded < 0.6 * files


@pytestmark_db
def test_missing_aes_key_is_a_source_storage_error(api, s3, session_id, celery_worker):
    """The key of an AES-128 recording is not in the source storage: -5, naming the key."""
    name = "ffmpeg-hls-aes"
    reason = corpus.missing_tool(name)
    if reason:
        pytest.skip(reason)
    built = corpus.build(name)
    prefix = f"ts/PEER{uuid.uuid4().hex[:8].upper()}/rec-{name}/1"
    upload_dir(s3, settings.SOURCE_DEFAULT_BUCKET, built.dir, prefix)
    s3.delete_object(Bucket=settings.SOURCE_DEFAULT_BUCKET, Key=f"{prefix}/aes.key")
    body = export_body(f"{prefix}/{built.entry.manifest}", session_id, ExportFormat="ts", StartTime="00:00:05",
                       Duration=3000)
    response = api.post(URL, body, format="json")
    assert response.status_code == 200 and response.json()["ErrorCode"] == 1, response.json()
    answer = poll(api, response.json()["TaskId"], session_id)
    assert answer["ErrorCode"] == -5, answer
    assert f"{prefix}/aes.key" in answer["ErrorMessage"], answer
