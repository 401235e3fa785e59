"""Exports that wait, end to end (the API, a Celery worker, the S3 test endpoint, real media):
recordings whose segments aged into archive storage classes (Stage `restoring`) and ranges past
the live edge of a recording still being made (Stage `waiting`). docs/api.md "Archived
recordings" and "Live recordings"; the waits are resourced.settings.test's short ones."""

import datetime as dt
import re
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from django.conf import settings

from exports.models import Export, Quota
from tests import mediagen
from tests.conftest import hold_restores_forever
from tests.exports.conftest import export_body, submit, upload_dir

URL = "/resource/v1/i/export-to-s3dir"
pytestmark = pytest.mark.django_db(transaction=True)
SOURCE = settings.SOURCE_DEFAULT_BUCKET


def get(api, task_id: str, session_id: str) -> dict:
    return api.get(f"{URL}/{task_id}", HTTP_X_SESSION_ID=session_id).json()


def poll_seen(api, task_id: str, session_id: str, timeout: float = 90.0) -> tuple[dict, list[dict]]:
    """Poll until the export ends; the final answer and every answer seen while it ran."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = get(api, task_id, session_id)
        seen.append(body)
        if body["ErrorCode"] != 1:
            return body, seen
        time.sleep(0.25)
    raise AssertionError(f"export {task_id} still processing after {timeout} s: {seen[-1]}")


def clip_of(s3, answer: dict, tmp_path: Path) -> str:
    local = tmp_path / Path(answer["VideoPath"]).name
    s3.download_file(settings.EXPORT_DEFAULT_BUCKET, answer["VideoPath"].lstrip("/"), str(local))
    return str(local)


def clip_seconds(path: str) -> float:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        times = [float(f.time) for f in container.decode(stream)]
    return max(times) - min(times) + 1 / 25


def new_prefix(purpose: str) -> tuple[str, str]:
    peer = "PEER" + uuid.uuid4().hex[:8].upper()
    return peer, f"{purpose}/{peer}/rec-{uuid.uuid4().hex[:6]}/1"


# --------------------------------------------------------------------------- archived recordings

@pytest.fixture(scope="module")
def dash_20s(tmp_path_factory) -> Path:
    """A 20 s DASH recording with 2 s segments ($Number$ names), made once."""
    local = tmp_path_factory.mktemp("archived") / "dash"
    mediagen.make_dash(str(local), duration_s=20, template="timeline")
    return local


def upload_archived(s3, local: Path, prefix: str, classes: dict) -> str:
    """Upload the recording; segment numbers in `classes` (1-based: segment n holds 2n-2 … 2n s)
    get that storage class, "manifest" the MPD's."""
    upload_dir(s3, SOURCE, str(local), prefix)
    for path in sorted(local.iterdir()):
        number = path.stem.rsplit("-", 1)[-1]
        storage_class = classes.get("manifest") if path.suffix == ".mpd" else (
            classes.get(int(number)) if number.isdigit() else None)
        if storage_class:
            s3.put_object(Bucket=SOURCE, Key=f"{prefix}/{path.name}", Body=path.read_bytes(),
                          StorageClass=storage_class)
    return f"{prefix}/manifest.mpd"


def restore_header(s3, key: str) -> str | None:
    return s3.head_object(Bucket=SOURCE, Key=key).get("Restore")


def test_archived_segments_are_restored_only_those_needed_then_exported(
        api, s3, session_id, celery_worker, dash_20s, restore_pace, tmp_path):
    peer, prefix = new_prefix("mp4")
    # the clip 6.5 s → 10.5 s lies in segments 4-6; 4 and 5 are GLACIER, 6 GLACIER_IR (read
    # directly), 9 GLACIER but outside the range
    restore_pace.set({"progression": "time", "seconds": 2})
    live_path = upload_archived(s3, dash_20s, prefix, {4: "GLACIER", 5: "GLACIER", 6: "GLACIER_IR", 9: "GLACIER"})
    time.sleep(2.2)  # past moto's first state (tests/conftest.py): restores asked for now stay in progress
    body = export_body(live_path, session_id, StartPos=mediagen_origin_ms() + 6500, Duration=4000,
                       RestoreTier="Expedited")
    task_id = submit(api, body)["TaskId"]
    answer, seen = poll_seen(api, task_id, session_id)
    assert answer["ErrorCode"] == 5, answer
    restoring = [b for b in seen if b["Stage"] == "restoring"]
    assert restoring, [b["Stage"] for b in seen]
    assert all(b["ErrorCode"] == 1 and b["TimeWait"] >= 1000 for b in restoring)
    assert "restoring 4 archived objects" in restoring[0]["ErrorMessage"]  # video and audio of 4 and 5
    # a re-post while it restored answered the same export (checked on the final state too)
    assert submit_again(api, body) == task_id

    archived = [f"{prefix}/chunk-{rep}-{n:05d}.m4s" for rep in (0, 1) for n in (4, 5)]
    for key in archived:
        assert 'ongoing-request="false"' in restore_header(s3, key)
    assert restore_header(s3, f"{prefix}/chunk-0-00009.m4s") is None, "outside the range: not restored"
    assert restore_header(s3, f"{prefix}/chunk-0-00006.m4s") is None, "GLACIER_IR is read directly"

    clip = clip_of(s3, answer, tmp_path)
    assert mediagen.first_stamp(clip) in ((6, 12), (6, 13))
    assert abs(clip_seconds(clip) - 4.0) <= 0.08 and answer["LackLength"] == 0
    export = Export.objects.get(task_id=task_id)
    assert export.restore_tier == "Expedited" and export.next_check_at is None
    assert set(export.waiting_on["restoring"]) == set(archived)


def test_an_archived_segment_after_an_end_on_a_boundary_is_not_waited_for(api, s3, session_id, celery_worker,
                                                                           dash_20s, tmp_path):
    # the clip 4 s → 8 s ends on the boundary that segment 5 opens: the engine also reads that
    # segment (media presented before the end may be stored after it), but it is optional: archived,
    # it is left out, not restored, and the export does not wait
    peer, prefix = new_prefix("mp4")
    live_path = upload_archived(s3, dash_20s, prefix, {5: "GLACIER"})
    body = export_body(live_path, session_id, StartPos=mediagen_origin_ms() + 4000, Duration=4000)
    answer, seen = poll_seen(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == 5 and answer["LackLength"] == 0, answer
    assert not [b for b in seen if b["Stage"] == "restoring"], [b["Stage"] for b in seen]
    for rep in (0, 1):
        assert restore_header(s3, f"{prefix}/chunk-{rep}-00005.m4s") is None, "the look-ahead is not restored"
    clip = clip_of(s3, answer, tmp_path)
    assert mediagen.first_stamp(clip) == (4, 0) and abs(clip_seconds(clip) - 4.0) <= 0.08


def submit_again(api, body) -> str:
    response = api.post(URL, body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["TaskId"]


def mediagen_origin_ms() -> int:
    return int(mediagen.DEFAULT_ORIGIN.timestamp() * 1000)


def test_archived_manifest_is_restored_first(api, s3, session_id, celery_worker, dash_20s, tmp_path):
    peer, prefix = new_prefix("mp4")
    live_path = upload_archived(s3, dash_20s, prefix, {"manifest": "DEEP_ARCHIVE"})
    body = export_body(live_path, session_id, StartPos=mediagen_origin_ms() + 2000, Duration=2000)
    answer, seen = poll_seen(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == 5, answer
    assert any(b["Stage"] == "restoring" for b in seen)
    assert 'ongoing-request="false"' in restore_header(s3, live_path)
    assert mediagen.first_stamp(clip_of(s3, answer, tmp_path)) == (2, 0)


def test_a_tier_s3_refuses_for_the_class_fails_naming_the_object(api, s3, session_id, celery_worker, dash_20s):
    peer, prefix = new_prefix("mp4")
    live_path = upload_archived(s3, dash_20s, prefix, {2: "DEEP_ARCHIVE"})
    body = export_body(live_path, session_id, StartPos=mediagen_origin_ms() + 2000, Duration=2000,
                       RestoreTier="Expedited")
    answer, _seen = poll_seen(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == -5, answer
    assert f"{prefix}/chunk-0-00002.m4s" in answer["ErrorMessage"] and "Expedited" in answer["ErrorMessage"]
    assert restore_header(s3, f"{prefix}/chunk-0-00002.m4s") is None, "no restore asked for"


def export_held_in_restoring(api, s3, session_id, restore_pace, dash_20s, segment: int) -> tuple[str, str]:
    """An export whose one archived segment's restore is in progress and never completes; its
    TaskId and the segment's key."""
    _peer, prefix = new_prefix("mp4")
    restore_pace.set({"progression": "time", "seconds": 3})
    live_path = upload_archived(s3, dash_20s, prefix, {segment: "GLACIER"})
    time.sleep(3.2)  # past moto's first state: the restore asked for now stays in progress 3 s
    start_ms = (segment - 1) * 2000
    body = export_body(live_path, session_id, StartPos=mediagen_origin_ms() + start_ms, Duration=2000)
    task_id = submit(api, body)["TaskId"]
    deadline = time.monotonic() + 20
    while get(api, task_id, session_id)["Stage"] != "restoring":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    key = f"{prefix}/chunk-0-{segment:05d}.m4s"
    hold_restores_forever(restore_pace, s3, SOURCE, key)
    return task_id, key


def test_a_restore_that_never_completes_fails_after_the_limit(api, s3, session_id, celery_worker, dash_20s,
                                                              restore_pace):
    task_id, key = export_held_in_restoring(api, s3, session_id, restore_pace, dash_20s, segment=2)
    answer, _seen = poll_seen(api, task_id, session_id, timeout=60)
    assert answer["ErrorCode"] == -5, answer
    assert key in answer["ErrorMessage"] and "did not complete" in answer["ErrorMessage"]
    export = Export.objects.get(task_id=task_id)
    waited = (export.finished_at - export.created_at).total_seconds()
    assert settings.EXPORT_RESTORE_MAX_HOURS * 3600 <= waited <= settings.EXPORT_RESTORE_MAX_HOURS * 3600 + 15


def test_cancel_while_restoring(api, s3, session_id, celery_worker, dash_20s, restore_pace):
    task_id, _key = export_held_in_restoring(api, s3, session_id, restore_pace, dash_20s, segment=3)
    cancelled = api.delete(f"{URL}/{task_id}", HTTP_X_SESSION_ID=session_id).json()
    assert cancelled["ErrorCode"] == -8 and cancelled["Stage"] == "cancelled"
    time.sleep(2.5)  # the scheduled check comes and finds it cancelled
    export = Export.objects.get(task_id=task_id)
    assert export.status == Export.Status.CANCELLED and export.timings == {}


def test_a_lost_check_is_sent_again_by_the_sweep(api, s3, session_id, celery_worker, dash_20s, restore_pace):
    from django.db.models import F

    from exports.services import export_sweep_stale

    task_id, _key = export_held_in_restoring(api, s3, session_id, restore_pace, dash_20s, segment=3)
    export = Export.objects.get(task_id=task_id)
    # its countdown message lost: a newer generation drops it when it comes, and it was due an hour ago
    Export.objects.filter(pk=export.pk).update(restarts=F("restarts") + 1)
    time.sleep(1.5)
    Export.objects.filter(pk=export.pk).update(next_check_at=export.next_check_at - dt.timedelta(hours=1))
    assert export_sweep_stale() == 1
    assert Export.objects.get(pk=export.pk).restarts == export.restarts + 2
    restore_pace.reset()  # moto's immediate restores again: the resent check finds the segment readable
    answer, _seen = poll_seen(api, task_id, session_id)
    assert answer["ErrorCode"] == 5, answer


S3_REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)?([A-Z]+) (/\S+) HTTP/')


def test_a_check_while_restores_are_under_way_only_heads_the_objects(api, s3, s3_server, session_id, celery_worker,
                                                                     dash_20s, restore_pace):
    task_id, key = export_held_in_restoring(api, s3, session_id, restore_pace, dash_20s, segment=5)
    prefix = key.rsplit("/", 1)[0]
    logged = len(s3_server.read_log())  # what the S3 endpoint logged (one line a request) before the checks
    checks, deadline = set(), time.monotonic() + 20
    while len(checks) < 3:  # each check that waits again sets a new next_check_at (1 s later, in tests)
        export = Export.objects.get(task_id=task_id)
        assert export.status in (Export.Status.WAITING, Export.Status.RUNNING), export.status
        if export.status == Export.Status.WAITING:
            checks.add(export.next_check_at)
        assert time.monotonic() < deadline, f"{len(checks)} checks in 20 s"
        time.sleep(0.1)
    time.sleep(0.2)  # (the endpoint logs a request once it has answered it)
    requests = [m.groups() for m in map(S3_REQUEST.search, s3_server.read_log()[logged:].splitlines())
                if m and m.group(2).startswith(f"/{SOURCE}/{prefix}/")]
    assert len(requests) >= 2, requests  # the checks after the first one: at least two
    assert {method for method, _path in requests} == {"HEAD"}, requests  # no GET of the manifest or a segment
    assert f"/{SOURCE}/{key}" in {path for _method, path in requests}
    export = Export.objects.get(task_id=task_id)
    assert export.waiting_on["restoring"][key] == "ongoing"
    answer = get(api, task_id, session_id)
    assert answer["Stage"] == "restoring" and "restoring" in answer["ErrorMessage"], answer
    api.delete(f"{URL}/{task_id}", HTTP_X_SESSION_ID=session_id)  # no more checks


def test_waiting_exports_have_their_own_quota(api, session_id):
    from exports.services import QuotaExceeded, export_request_build, quota_check

    Quota.objects.create(scope=Quota.Scope.USER, subject="waiter@example.com", max_active_exports=1, max_waiting=1)
    Export.objects.create(idempotency_key="w1", service_caller="mma", userid="waiter@example.com", live_path="x.mpd",
                          peer_id="p", file_name="", start_pos=0, start_time_ms=0, duration_ms=1000,
                          source_bucket=SOURCE, dest_bucket="export", status=Export.Status.WAITING,
                          stage=Export.Stage.RESTORING)
    data = {"ServiceCaller": "mma", "LivePath": "mp4/P/r/1/manifest.mpd", "StartPos": 0, "StartTime": "0",
            "Duration": 1000, "userid": "waiter@example.com"}
    request = export_request_build(data=data, session_userid="waiter@example.com")
    with pytest.raises(QuotaExceeded, match="waiting on archive restores or the live edge"):
        quota_check(request)
    Quota.objects.filter(subject="waiter@example.com").update(max_waiting=2)
    quota_check(request)  # the waiting export does not count against max_active_exports


# --------------------------------------------------------------------------- live recordings

def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def hls_playlist(full: str, segments: int, *, endlist: bool, origin: dt.datetime) -> bytes:
    """The first `segments` segments of an HLS media playlist, as a live packager writes it, its
    PROGRAM-DATE-TIMEs moved so that the first segment started at `origin`."""
    shift = origin - mediagen.DEFAULT_ORIGIN
    lines, kept = [], 0
    for line in full.splitlines():
        if line.startswith("#EXT-X-ENDLIST") or line.startswith("#EXT-X-PLAYLIST-TYPE"):
            continue
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            when = dt.datetime.fromisoformat(line.split(":", 1)[1]) + shift
            lines.append("#EXT-X-PROGRAM-DATE-TIME:" + when.isoformat(timespec="milliseconds"))
            continue
        if line and not line.startswith("#"):
            kept += 1
            lines.append(line)
            if kept == segments:
                break
            continue
        lines.append(line)
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def live_hls_media(tmp_path_factory) -> tuple[Path, str]:
    """A 20 s HLS recording (2 s TS segments), made once; its playlist text."""
    local = tmp_path_factory.mktemp("live") / "hls"
    playlist = mediagen.make_hls(str(local), duration_s=20, program_date_time=mediagen.DEFAULT_ORIGIN)
    return local, Path(playlist).read_text()


class LiveHls:
    """The recording uploaded as a live one that started 10 s ago: publish(n) writes its
    playlist with the first n segments, as the packager does every segment."""

    def __init__(self, s3, media: tuple[Path, str]):
        local, self.full = media
        self.s3 = s3
        self.origin = _now() - dt.timedelta(seconds=10)
        self.origin_ms = int(self.origin.timestamp() * 1000)
        _peer, prefix = new_prefix("ts")
        upload_dir(s3, SOURCE, str(local), prefix)
        self.key = f"{prefix}/index.m3u8"

    def publish(self, segments: int, *, endlist: bool = False) -> None:
        self.s3.put_object(Bucket=SOURCE, Key=self.key,
                           Body=hls_playlist(self.full, segments, endlist=endlist, origin=self.origin))


@pytest.fixture
def live_hls(s3, live_hls_media) -> LiveHls:
    return LiveHls(s3, live_hls_media)


def wait_for_stage(api, task_id: str, session_id: str, stage: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = get(api, task_id, session_id)
        if body["Stage"] == stage:
            return body
        assert body["ErrorCode"] == 1 and time.monotonic() < deadline, body
        time.sleep(0.2)


def test_hls_range_past_the_live_edge_waits_then_exports(api, s3, session_id, celery_worker, live_hls, tmp_path):
    live_hls.publish(5)  # 10 s recorded
    body = export_body(live_hls.key, session_id, StartPos=live_hls.origin_ms + 6000, Duration=6000)  # ends at 12 s
    task_id = submit(api, body)["TaskId"]
    waiting = wait_for_stage(api, task_id, session_id, "waiting")
    assert waiting["ErrorCode"] == 1 and waiting["TimeWait"] >= 1000 and "live edge" in waiting["ErrorMessage"]
    time.sleep(2)
    assert get(api, task_id, session_id)["Stage"] == "waiting"
    live_hls.publish(7)  # the packager goes on: 14 s
    answer, _seen = poll_seen(api, task_id, session_id)
    assert answer["ErrorCode"] == 5 and answer["LackLength"] == 0, answer
    clip = clip_of(s3, answer, tmp_path)
    assert mediagen.first_stamp(clip) == (6, 0)
    assert abs(clip_seconds(clip) - 6.0) <= 0.08


def test_hls_recording_that_ends_early_exports_what_exists(api, s3, session_id, celery_worker, live_hls, tmp_path):
    live_hls.publish(5)
    body = export_body(live_hls.key, session_id, StartPos=live_hls.origin_ms + 6000, Duration=8000)  # ends at 14 s
    task_id = submit(api, body)["TaskId"]
    wait_for_stage(api, task_id, session_id, "waiting")
    live_hls.publish(6, endlist=True)  # it ended at 12 s
    answer, _seen = poll_seen(api, task_id, session_id)
    assert answer["ErrorCode"] == 5, answer
    assert abs(answer["LackLength"] - 2000) <= 40, answer
    clip = clip_of(s3, answer, tmp_path)
    assert mediagen.first_stamp(clip) == (6, 0) and abs(clip_seconds(clip) - 6.0) <= 0.08


def test_a_recording_that_stops_growing_is_exported_after_the_stall(api, s3, session_id, celery_worker, live_hls,
                                                                    tmp_path):
    live_hls.publish(5)
    body = export_body(live_hls.key, session_id, StartPos=live_hls.origin_ms + 6000, Duration=60000)  # far past the edge
    started = time.monotonic()
    answer, seen = poll_seen(api, submit(api, body)["TaskId"], session_id)
    waited = time.monotonic() - started
    assert answer["ErrorCode"] == 5, answer
    assert any(b["Stage"] == "waiting" for b in seen)
    assert settings.EXPORT_LIVE_STALL_SECONDS <= waited <= settings.EXPORT_LIVE_STALL_SECONDS + 15
    assert abs(answer["LackLength"] - 56000) <= 40, answer
    assert mediagen.first_stamp(clip_of(s3, answer, tmp_path)) == (6, 0)


def _dynamic_mpd(path: Path, *, origin: dt.datetime, segments: int | None) -> bytes:
    """The MPD as a live packager publishes it: type dynamic, no duration, and (SegmentTimeline)
    only the first `segments` segments; `segments` None keeps a @duration template as it is."""
    ns = "urn:mpeg:dash:schema:mpd:2011"
    ET.register_namespace("", ns)
    tree = ET.parse(path)
    root = tree.getroot()
    root.set("type", "dynamic")
    root.set("availabilityStartTime", origin.isoformat().replace("+00:00", "Z"))
    root.set("publishTime", _now().isoformat().replace("+00:00", "Z"))
    root.set("minimumUpdatePeriod", "PT2S")
    for name in ("mediaPresentationDuration",):
        root.attrib.pop(name, None)
    for period in root.iter(f"{{{ns}}}Period"):
        period.attrib.pop("duration", None)
    if segments is not None:
        for timeline in root.iter(f"{{{ns}}}SegmentTimeline"):
            entries = mediagen._expand_timeline(timeline)[:segments]
            for s in list(timeline):
                timeline.remove(s)
            for i, (t, d) in enumerate(entries):
                ET.SubElement(timeline, f"{{{ns}}}S", {"t": str(t), "d": str(d)} if i == 0 else {"d": str(d)})
    return ET.tostring(root, xml_declaration=True, encoding="utf-8")


@pytest.mark.parametrize("template", ["timeline", "number"])
def test_dash_range_past_the_live_edge_waits_then_exports(api, s3, session_id, celery_worker, tmp_path, template):
    local = tmp_path / "dash"
    mediagen.make_dash(str(local), duration_s=20, template=template)
    peer, prefix = new_prefix("mp4")
    upload_dir(s3, SOURCE, str(local), prefix)
    key = f"{prefix}/manifest.mpd"
    # 9 s ago the recording started: 4 segments (8 s) are complete
    origin = _now() - dt.timedelta(seconds=9)
    s3.put_object(Bucket=SOURCE, Key=key, Body=_dynamic_mpd(local / "manifest.mpd", origin=origin,
                                                             segments=4 if template == "timeline" else None))
    origin_ms = int(origin.timestamp() * 1000)
    body = export_body(key, session_id, StartPos=origin_ms + 6000, Duration=5000)  # ends at 11 s
    task_id = submit(api, body)["TaskId"]
    waiting = wait_for_stage(api, task_id, session_id, "waiting")
    assert waiting["TimeWait"] >= 1000
    if template == "timeline":  # the packager appends segments to the timeline as they are made
        time.sleep(3)
        s3.put_object(Bucket=SOURCE, Key=key, Body=_dynamic_mpd(local / "manifest.mpd", origin=origin, segments=7))
    # ($Number$ with @duration: the edge moves with the clock, the MPD stays as it is)
    answer, _seen = poll_seen(api, task_id, session_id)
    assert answer["ErrorCode"] == 5 and answer["LackLength"] == 0, answer
    clip = clip_of(s3, answer, tmp_path)
    assert mediagen.first_stamp(clip) == (6, 0)
    assert abs(clip_seconds(clip) - 5.0) <= 0.08
    waited = Export.objects.get(task_id=task_id).waiting_on["live"]
    assert waited["end_ms"] == pytest.approx(11000, abs=1)
