"""Through `make run` (scripts/devserver.py: embedded Redis, the embedded S3 endpoint, gunicorn, a
worker, beat), an export of an archived recording and an export whose end is still in the future
both answer ErrorCode 1 with the right Stage while they wait, then become ready with the right
clip, with the client doing nothing but polling (issue 17's "Done when")."""

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests import mediagen
from tests.exports.conftest import ORIGIN_MS, export_body
from tests.exports.test_waiting_exports import hls_playlist
from tests.servers import wait_for
from tests.test_make_run_kill import RunStack

pytestmark = pytest.mark.slow
URL = "/resource/v1/i/export-to-s3dir"


@pytest.fixture
def stack(log_dir):
    var_dir = Path(tempfile.mkdtemp(prefix="rs-wait-"))
    # an operator's choice for a demo: look at restores every 2 s (300 s by default)
    run = RunStack(var_dir, EXPORT_RESTORE_CHECK_SECONDS=2, EXPORT_LIVE_CHECK_MAX_SECONDS=2)
    try:
        run.wait_running()
        yield run
    finally:
        run.stop()
        shutil.copy(run.log_path, log_dir / f"make-run-{var_dir.name}.log")
        shutil.rmtree(var_dir, ignore_errors=True)


def upload(s3, local: Path, prefix: str) -> None:
    for path in local.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "recordings", f"{prefix}/{path.relative_to(local).as_posix()}")


def test_archived_and_live_exports_wait_then_complete_on_make_run(stack, tmp_path):
    http = requests.Session()
    session = stack.session_id()
    wait_for(lambda: http.get(f"{stack.web}/healthz", timeout=10).status_code == 200, 90, "healthz 200")
    s3 = stack.s3()

    # an archived recording: the segments of 4–8 s in GLACIER
    dash = tmp_path / "dash"
    mediagen.make_dash(str(dash), duration_s=12, template="timeline")
    archived_prefix = "mp4/PEERARCH/rec-archived/1"
    upload(s3, dash, archived_prefix)
    for path in dash.glob("chunk-*-0000[34].m4s"):
        s3.put_object(Bucket="recordings", Key=f"{archived_prefix}/{path.name}", Body=path.read_bytes(),
                      StorageClass="GLACIER")

    # a live recording: 10 s recorded of a packager that started 10 s ago
    hls = tmp_path / "hls"
    full = Path(mediagen.make_hls(str(hls), duration_s=16, program_date_time=mediagen.DEFAULT_ORIGIN)).read_text()
    live_prefix = "ts/PEERLIVE/rec-live/1"
    upload(s3, hls, live_prefix)
    origin = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=10)
    s3.put_object(Bucket="recordings", Key=f"{live_prefix}/index.m3u8",
                  Body=hls_playlist(full, 5, endlist=False, origin=origin))

    def submit(body: dict) -> str:
        answer = http.post(f"{stack.web}{URL}", json=body, timeout=30).json()
        assert answer["ErrorCode"] == 1, answer
        return answer["TaskId"]

    def state(task_id: str) -> dict:
        return http.get(f"{stack.web}{URL}/{task_id}", headers={"X-Session-Id": session}, timeout=30).json()

    archived = submit(export_body(f"{archived_prefix}/manifest.mpd", session, StartPos=ORIGIN_MS + 4500,
                                  Duration=3000))
    live = submit(export_body(f"{live_prefix}/index.m3u8", session,
                              StartPos=int(origin.timestamp() * 1000) + 6000, Duration=6000))
    seen = {archived: set(), live: set()}
    published = False
    deadline = time.monotonic() + 120
    finals = {}
    while len(finals) < 2:
        assert time.monotonic() < deadline, (seen, {t: state(t) for t in seen}, stack.read_log())
        for task_id in seen:
            if task_id in finals:
                continue
            answer = state(task_id)
            seen[task_id].add(answer["Stage"])
            if answer["ErrorCode"] != 1:
                finals[task_id] = answer
        if "waiting" in seen[live] and not published:
            time.sleep(1)
            s3.put_object(Bucket="recordings", Key=f"{live_prefix}/index.m3u8",
                          Body=hls_playlist(full, 7, endlist=False, origin=origin))  # 14 s now
            published = True
        time.sleep(0.3)

    assert "restoring" in seen[archived] and "waiting" in seen[live], seen
    for task_id, first in ((archived, (4, 12)), (live, (6, 0))):
        answer = finals[task_id]
        assert answer["ErrorCode"] == 5 and answer["LackLength"] == 0, answer
        clip = tmp_path / Path(answer["VideoPath"]).name
        s3.download_file("export", answer["VideoPath"].lstrip("/"), str(clip))
        assert mediagen.first_stamp(str(clip)) in (first, (first[0], first[1] + 1))
