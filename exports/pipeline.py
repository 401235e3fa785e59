"""The steps of an export: download → cut → encode → thumbnail → upload.

Each step takes the Export row, does its work in the export's work dir and records what it did.
Steps are idempotent: the work dir and the object keys are fixed per export, and a step whose
output already exists skips its work. The media work itself is exports.media (pure PyAV).
"""

import contextvars
import json
import tempfile
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from exports import media
from exports.credentials import decrypt_credentials
from exports.models import Export
from exports.services import ExportError, image_location, live_path_parts, output_file_name, work_dir
from imgbed.errors import ImageStorageError
from imgbed.services import image_save_bytes, image_url
from resourced.s3 import S3Location, error_code, is_not_found

logger = logging.getLogger(__name__)

STAGE_PROGRESS = {"download": (0, 40), "cut": (40, 55), "encode": (55, 85), "thumbnail": (85, 90), "upload": (90, 100)}
TRANSIENT_S3_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
)
SERVER_ERROR_CODES = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"}


class TransientError(Exception):
    """A failure worth retrying (network, 5xx); the step is retried with backoff, then fails with
    `code` (-5 source, -6 destination) when the retries are spent."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def classify_s3_error(exc: Exception, *, side: str) -> Exception:
    """Map a boto error on the source (-5) or destination (-6) to a transient or final error."""
    code = -5 if side == "source" else -6
    what = "source storage" if side == "source" else "destination"
    if isinstance(exc, TRANSIENT_S3_ERRORS) or error_code(exc) in SERVER_ERROR_CODES:
        return TransientError(code, f"{what} unreachable: {error_code(exc)}")
    return ExportError(code, f"{what}: {error_code(exc)}")


# --- the work dir -----------------------------------------------------------------------------

def local_path(export: Export, key: str) -> Path:
    return work_dir(export) / "files" / key.lstrip("/")


def source_location(export: Export) -> S3Location:
    return S3Location(bucket=export.source_bucket, region=export.source_region, prefix=export.source_prefix)


def destination_location(export: Export) -> S3Location:
    credentials = decrypt_credentials(export.dest_credentials)
    return S3Location(
        bucket=export.dest_bucket,
        region=export.dest_region,
        access_key=credentials.access_key if credentials else "",
        secret_key=credentials.secret_key if credentials else "",
    )


def output_path(export: Export) -> Path:
    return work_dir(export) / "out" / names(export)["file_name"]


def names(export: Export) -> dict:
    parts = live_path_parts(export.live_path)
    recording = parts[2] if len(parts) > 2 else (parts[-2] if len(parts) > 1 else "recording")
    file_name = output_file_name(
        file_name=export.file_name, export_format=export.export_format, peer_id=export.peer_id,
        recording=recording, start_pos=export.start_pos, duration_ms=export.duration_ms,
    )
    image_dir, image_name = image_location(
        peer_id=export.peer_id, recording=recording, start_pos=export.start_pos, duration_ms=export.duration_ms
    )
    key = f"{settings.EXPORT_S3_DIR.strip('/')}/{export.peer_id}/{file_name}"
    return {"file_name": file_name, "video_key": key, "image_dir": image_dir, "image_name": image_name}


# --- progress and heartbeat --------------------------------------------------------------------

def set_progress(export: Export, stage: str, fraction: float = 0.0) -> None:
    low, high = STAGE_PROGRESS[stage]
    Export.objects.filter(pk=export.pk).update(
        stage=stage, progress=int(low + (high - low) * min(max(fraction, 0.0), 1.0)), heartbeat_at=timezone.now()
    )


@contextmanager
def heartbeat(export: Export):
    """Keep heartbeat_at fresh while a step runs, so the stale sweep leaves the export alone."""
    stop = threading.Event()

    def beat():
        while not stop.wait(settings.EXPORT_HEARTBEAT_SECONDS):
            try:
                Export.objects.filter(pk=export.pk).update(heartbeat_at=timezone.now())
            except Exception:  # the step itself reports real database trouble
                logger.debug("heartbeat update failed", exc_info=True)

    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(beat,), name=f"heartbeat-{export.task_id}", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def injected_delay(stage: str) -> None:
    """FAULT_INJECTION's delay for this stage (fault tests only; empty in production)."""
    seconds = float((settings.FAULT_INJECTION or {}).get("delay", {}).get(stage, 0))
    if seconds > 0:
        time.sleep(seconds)


def record_timing(export: Export, stage: str, seconds: float) -> None:
    """Store how long a stage took and on which worker host it ran."""
    export.refresh_from_db(fields=["timings", "step_hosts"])
    timings = dict(export.timings or {}, **{stage: round(seconds, 3)})
    hosts = dict(export.step_hosts or {}, **{stage: settings.WORKER_HOSTNAME})
    Export.objects.filter(pk=export.pk).update(timings=timings, step_hosts=hosts)
    logger.info("export %s: %s done on %s in %.3f s", export.task_id, stage, settings.WORKER_HOSTNAME, seconds)


# --- download --------------------------------------------------------------------------------

def fetch_recording(live_path: str, location: S3Location, client):
    """The recording's manifest (and an HLS variant playlist) from the source storage."""
    manifests: dict[str, bytes] = {}

    def fetch(key: str) -> bytes:
        try:
            body = client.get_object(Bucket=location.bucket, Key=location.key(key))["Body"].read()
        except botocore.exceptions.ClientError as exc:
            if is_not_found(exc):
                raise ExportError(-1, f"not such dir: {key} is not in bucket {location.bucket}") from exc
            raise classify_s3_error(exc, side="source") from exc
        except TRANSIENT_S3_ERRORS as exc:
            raise classify_s3_error(exc, side="source") from exc
        manifests[key] = body
        return body

    try:
        recording = media.load_recording(fetch, live_path)
    except media.ManifestError as exc:
        raise ExportError(-7, f"LivePath: the manifest cannot be read: {exc}") from exc
    return recording, manifests


def clip_start_ms(request, recording) -> float:
    """StartPos - origin when the manifest has a wall-clock origin, StartTime otherwise
    (`request` is an Export or a Thumbnail: both carry start_pos and start_time_ms)."""
    if recording.origin_ms is not None:
        return float(request.start_pos - recording.origin_ms)
    return float(request.start_time_ms)


def load_selection(export: Export):
    """The segment selection, rebuilt on the worker from the manifests kept in the work dir."""

    def fetch(key: str) -> bytes:
        return local_path(export, key).read_bytes()

    recording = media.load_recording(fetch, export.live_path)
    start = export.clip_start_ms if export.clip_start_ms is not None else clip_start_ms(export, recording)
    return media.select_segments(recording, start, start + export.duration_ms)


def downloaded_files(export: Export, selection) -> dict[str, str]:
    files = {}
    for key in selection.keys():
        path = local_path(export, key)
        if path.exists():
            files[key] = str(path)
    return files


def download_keys(*, client, location: S3Location, keys: list[str], path_for, on_progress=None):
    """Fetch storage keys in parallel into path_for(key) (temp name, then rename).

    Returns (keys missing in storage, files fetched, bytes). A key whose file is already there (a
    redelivered download) is kept. Transient errors raise TransientError, others ExportError.
    """
    done = {"count": 0, "bytes": 0}
    lock = threading.Lock()
    missing: list[str] = []

    def get(key: str) -> None:
        path = path_for(key)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(path.name + ".part")
            try:
                # one GET per segment, streamed to the file (s3transfer's download_file sends a HEAD
                # before each GET: twice the requests for segments of a few hundred kB)
                body = client.get_object(Bucket=location.bucket, Key=location.key(key))["Body"]
                with open(part, "wb") as handle:
                    for chunk in body.iter_chunks(1 << 20):
                        handle.write(chunk)
            except botocore.exceptions.ClientError as exc:
                part.unlink(missing_ok=True)
                if is_not_found(exc):
                    with lock:
                        missing.append(key)
                    return
                raise classify_s3_error(exc, side="source") from exc
            except TRANSIENT_S3_ERRORS as exc:
                part.unlink(missing_ok=True)
                raise classify_s3_error(exc, side="source") from exc
            os.replace(part, path)
        with lock:
            done["count"] += 1
            done["bytes"] += path.stat().st_size
            count = done["count"]
        if on_progress:
            on_progress(count)

    with ThreadPoolExecutor(max_workers=settings.EXPORT_DOWNLOAD_CONCURRENCY) as pool:
        # each fetch runs in a copy of this context, so its log lines carry the TaskId too
        futures = [pool.submit(contextvars.copy_context().run, get, key) for key in keys]
        for future in futures:
            future.result()
    return missing, done["count"], done["bytes"]


def step_download(export: Export) -> None:
    started = time.monotonic()
    location = source_location(export)
    client = location.client()
    set_progress(export, "download")
    recording, manifests = fetch_recording(export.live_path, location, client)
    start = clip_start_ms(export, recording)
    selection = media.select_segments(recording, start, start + export.duration_ms)
    keys = selection.keys()
    segment_keys = [s.key for t in selection.tracks for s in t.segments]
    if not segment_keys:
        raise ExportError(-1, f"not such dir: the recording has no media between {start:.0f} ms and "
                              f"{start + export.duration_ms:.0f} ms (it covers 0–{recording.duration_ms:.0f} ms)")
    for key, body in manifests.items():
        path = local_path(export, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    def progress(count: int) -> None:
        if count % 4 == 0:
            set_progress(export, "download", count / len(keys))

    missing, count, size = download_keys(client=client, location=location, keys=keys,
                                         path_for=lambda key: local_path(export, key), on_progress=progress)
    missing_segments = [k for k in missing if k in set(segment_keys)]
    if len(missing_segments) == len(segment_keys) or (set(missing) - set(missing_segments)):
        raise ExportError(-1, "not such dir: the segments of the requested range are not in the source storage")
    lack = media.lack_length(selection, missing)
    Export.objects.filter(pk=export.pk).update(
        origin_ms=recording.origin_ms,
        clip_start_ms=start,
        lack_ms=lack,
        bytes_downloaded=F("bytes_downloaded") + size,
        bytes_needed=size,
        segments_missing=len(missing_segments),
        host=settings.WORKER_HOSTNAME,
    )
    (work_dir(export) / "download.json").write_text(json.dumps({"missing": missing, "lack_ms": lack}))
    set_progress(export, "download", 1.0)
    record_timing(export, "download", time.monotonic() - started)
    logger.info("export %s downloaded %d files (%d bytes), %d missing, LackLength %d ms",
                export.task_id, count, size, len(missing), lack)


# --- cut, encode, thumbnail ---------------------------------------------------------------------

def cut_path(export: Export) -> Path:
    if export.export_type == Export.ExportType.COPY:
        return output_path(export)
    return work_dir(export) / "cut" / "intermediate.ts"


def _media_call(fn, **kwargs):
    try:
        return fn(**kwargs)
    except media.MediaError as exc:
        raise ExportError(-7, f"media: {exc}") from exc


def step_cut(export: Export) -> None:
    started = time.monotonic()
    set_progress(export, "cut")
    target = cut_path(export)
    if not target.exists():
        selection = load_selection(export)
        target.parent.mkdir(parents=True, exist_ok=True)
        copy = export.export_type == Export.ExportType.COPY
        info = _media_call(media.cut_clip, selection=selection, files=downloaded_files(export, selection),
                           out_path=str(target), container=export.export_format if copy else "ts",
                           accurate=copy and settings.EXPORT_SMART_CUT)
        Export.objects.filter(pk=export.pk).update(lead_ms=info.lead_ms, output_duration_ms=info.duration_ms)
    set_progress(export, "cut", 1.0)
    record_timing(export, "cut", time.monotonic() - started)


def step_encode(export: Export) -> None:
    started = time.monotonic()
    set_progress(export, "encode")
    if export.export_type != Export.ExportType.COPY:
        target = output_path(export)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            codec = "h264" if export.export_type == Export.ExportType.H264 else "h265"
            preset = settings.MEDIA_H264_PRESET if codec == "h264" else settings.MEDIA_H265_PRESET
            export.refresh_from_db(fields=["lead_ms"])
            info = _media_call(
                media.encode_clip, src_path=str(cut_path(export)), out_path=str(target), codec=codec,
                container=export.export_format, trim_start_ms=export.lead_ms, duration_ms=float(export.duration_ms),
                preset=preset, crf=settings.MEDIA_CRF, threads=settings.MEDIA_THREADS, hwaccel=settings.MEDIA_HWACCEL,
            )
            Export.objects.filter(pk=export.pk).update(output_duration_ms=info.duration_ms)
    set_progress(export, "encode", 1.0)
    record_timing(export, "encode", time.monotonic() - started)


def step_thumbnail(export: Export) -> None:
    started = time.monotonic()
    set_progress(export, "thumbnail")
    n = names(export)
    jpeg = work_dir(export) / "thumb" / n["image_name"]
    if not jpeg.exists():
        jpeg.parent.mkdir(parents=True, exist_ok=True)
        _media_call(media.thumbnail, src_path=str(output_path(export)), out_path=str(jpeg),
                    max_size=settings.THUMBNAIL_MAX_SIZE, quality=settings.THUMBNAIL_QUALITY)
    try:
        image_save_bytes(path=n["image_dir"], filename=n["image_name"], data=jpeg.read_bytes(),
                         uploader=f"export:{export.task_id}")
    except ImageStorageError as exc:
        raise TransientError(-9, f"image bed unavailable: {exc.message}") from exc
    Export.objects.filter(pk=export.pk).update(image_path=image_url(path=n["image_dir"], filename=n["image_name"]))
    set_progress(export, "thumbnail", 1.0)
    record_timing(export, "thumbnail", time.monotonic() - started)


# --- upload ------------------------------------------------------------------------------------

def step_upload(export: Export) -> dict:
    started = time.monotonic()
    set_progress(export, "upload")
    n = names(export)
    source = output_path(export)
    location = destination_location(export)
    size = source.stat().st_size
    config = TransferConfig(
        multipart_threshold=settings.S3_MULTIPART_THRESHOLD,
        multipart_chunksize=settings.S3_MULTIPART_CHUNKSIZE,
        max_concurrency=4,
    )
    sent = {"bytes": 0}

    def progress(chunk: int) -> None:
        sent["bytes"] += chunk
        if size:
            set_progress(export, "upload", sent["bytes"] / size)

    content_type = "video/mp4" if export.export_format == "mp4" else "video/mp2t"
    try:
        location.client().upload_file(
            str(source), location.bucket, n["video_key"], Config=config, Callback=progress,
            ExtraArgs={"ContentType": content_type},
        )
    except (botocore.exceptions.ClientError, *TRANSIENT_S3_ERRORS) as exc:
        raise classify_s3_error(exc, side="destination") from exc
    except Exception as exc:  # s3transfer wraps errors of the multipart parts
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, (botocore.exceptions.ClientError, *TRANSIENT_S3_ERRORS)):
            raise classify_s3_error(cause, side="destination") from exc
        raise
    record_timing(export, "upload", time.monotonic() - started)
    return {"video_key": n["video_key"], "video_path": "/" + n["video_key"], "output_bytes": size}


# --- getthumbnail: one frame at a position of a recording ------------------------------------------

def make_thumbnail(thumb) -> str:
    """Fetch the segment that holds the position, decode the frame, store it in the image bed;
    returns its ImagePath. `thumb` is a Thumbnail row."""
    location = S3Location(bucket=thumb.source_bucket, region=thumb.source_region, prefix=thumb.source_prefix)
    client = location.client()
    recording, _manifests = fetch_recording(thumb.live_path, location, client)
    position = clip_start_ms(thumb, recording)
    selection = media.select_segments(recording, position, position + 1)
    if not any(t.segments for t in selection.tracks):
        raise ExportError(-1, f"not such dir: the recording has no media at {position:.0f} ms")
    # the picture only: the first (video or muxed) track
    video_only = media.Selection(start_ms=selection.start_ms, end_ms=selection.end_ms,
                                 tracks=selection.tracks[:1], lack_ms=selection.lack_ms)
    keys = video_only.keys()
    scratch = Path(settings.EXPORT_WORK_DIR)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=f"thumb-{thumb.task_id}-") as tmp:
        missing, _count, _size = download_keys(client=client, location=location, keys=keys,
                                               path_for=lambda key: Path(tmp) / "files" / key)
        if missing:
            raise ExportError(-1, "not such dir: the segment at that position is not in the source storage")
        jpeg = Path(tmp) / "frame.jpg"
        _media_call(media.thumbnail_from_selection, selection=video_only,
                    files={k: str(Path(tmp) / "files" / k) for k in keys}, out_path=str(jpeg),
                    max_size=settings.THUMBNAIL_MAX_SIZE, quality=settings.THUMBNAIL_QUALITY)
        path, name = thumb.image_location()
        image_save_bytes(path=path, filename=name, data=jpeg.read_bytes(), uploader=f"getthumbnail:{thumb.task_id}")
    return image_url(path=path, filename=name)
