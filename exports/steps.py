"""The work of each stage of an export: download → cut → encode → thumbnail → upload.

Each step takes what it needs (locations, an ExportPaths, numbers) and returns a small result;
none reads or writes the Export row: exports/services.py records what a step returns. Steps are
idempotent: the work dir and the object keys are fixed per export, outputs are written under a
temporary name then renamed. The media work itself is exports.media (pure PyAV).
"""

import hashlib
import logging
import math
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import botocore.exceptions
from django.conf import settings

from exports import media
from exports.errors import (
    ErrorCode,
    ExportError,
    RangeNotRecorded,
    SourceArchived,
    TransientExportError,
)
from exports.paths import ExportPaths
from imgbed.errors import ImageNotAllowed, ImageStorageError
from imgbed.services import image_save_bytes, image_url
from imgbed.storage import imgbed_storage
from resourced.archive import (
    ArchiveState,
    RestoreRefused,
    archive_state,
    request_restore,
    typical_restore_seconds,
)
from resourced.s3 import (
    ObjectExists,
    S3Location,
    download_objects,
    error_code,
    is_archived,
    is_not_found,
    is_transient,
    read_object,
    s3_cause,
    upload_if_absent,
)

logger = logging.getLogger(__name__)

Progress = Callable[[float], None]  # fraction of the stage done, 0..1
# the TaskId of the export that wrote an object, in its user metadata (x-amz-meta-resourced-export)
WRITER_METADATA = "resourced-export"
MAX_NAME_SUFFIX = 1000  # <name>_1 … <name>_999 are tried when a clip's or a thumbnail's name is taken


def warm_up() -> None:
    """Build the S3 clients the steps use (the default source and destination, the image bed) now,
    so that the first export a worker process runs does not pay ~0.1 s for each."""
    S3Location(bucket=settings.SOURCE_DEFAULT_BUCKET, region=settings.SOURCE_DEFAULT_REGION).client()
    S3Location(bucket=settings.EXPORT_DEFAULT_BUCKET, region=settings.EXPORT_DEFAULT_REGION).client()
    imgbed_storage().connection  # noqa: B018  (django-storages builds its boto3 resource on first use)


def storage_error(exc: BaseException, *, side: str) -> Exception:
    """An S3 error on the source (-5) or the destination (-6), as a transient or a final error."""
    code = ErrorCode.SOURCE_STORAGE if side == "source" else ErrorCode.DESTINATION
    what = "source storage" if side == "source" else "destination"
    cause = s3_cause(exc) or exc
    if is_transient(cause):
        return TransientExportError(code, f"{what} unreachable: {error_code(cause)}")
    return ExportError(code, f"{what}: {error_code(cause)}")


def _media(fn, **kwargs):
    try:
        return fn(**kwargs)
    except media.KeyUnavailable as exc:
        raise ExportError(ErrorCode.SOURCE_STORAGE, f"source storage: the AES-128 key {exc.key} cannot be read") from exc
    except media.MediaError as exc:
        raise ExportError(ErrorCode.MEDIA, f"media: {exc}") from exc


class ArchivedObjects(ExportError):
    """Objects a GET cannot read because they are archived: -5 where nothing restores them
    (getthumbnail); the export's download restores them (restore_archived)."""

    def __init__(self, keys):
        self.keys = tuple(keys)
        super().__init__(ErrorCode.SOURCE_STORAGE,
                         f"source storage: {', '.join(self.keys[:3])}{' …' if len(self.keys) > 3 else ''} "
                         f"archived (InvalidObjectState)")


# --- the recording ------------------------------------------------------------------------------

def fetch_recording(*, live_path: str, location: S3Location) -> tuple[media.Recording, dict[str, bytes]]:
    """The recording's manifest (and an HLS variant playlist, and the byte ranges of media files
    the manifest needs read: DASH segment indexes) from the source storage; what was read, by
    local name (media.part_name), is returned with it for the work dir."""
    manifests: dict[str, bytes] = {}

    def get(key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        try:
            body = read_object(location=location, key=key, byte_range=byte_range)
        except botocore.exceptions.ClientError as exc:
            if is_not_found(exc):
                raise ExportError(ErrorCode.NO_SUCH_RECORDING,
                                  f"not such dir: {key} is not in bucket {location.bucket}") from exc
            if is_archived(exc):
                raise ArchivedObjects([key]) from exc
            raise storage_error(exc, side="source") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise storage_error(exc, side="source") from exc
        manifests[media.part_name(key, byte_range)] = body
        return body

    try:
        recording = media.load_recording(get, live_path, fetch_range=lambda key, first, last: get(key, (first, last)))
    except media.ManifestError as exc:
        raise ExportError(ErrorCode.MEDIA, f"LivePath: the manifest cannot be read: {exc}") from exc
    return recording, manifests


def clip_start_ms(*, recording: media.Recording, start_pos: int, start_time_ms: int) -> float:
    """StartPos - origin when the manifest has a wall-clock origin, StartTime otherwise."""
    if recording.origin_ms is not None:
        return float(start_pos - recording.origin_ms)
    return float(start_time_ms)


# --- download ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Downloaded:
    origin_ms: int | None
    clip_start_ms: float
    lack_ms: int
    files: int
    bytes: int
    segments_missing: int
    selection: media.Selection | None = field(default=None, compare=False, repr=False)  # for a cut in this task


@dataclass(frozen=True)
class RestorePolicy:
    """How an export restores archived objects of its range."""

    tier: str
    days: int
    seen: frozenset[str] = frozenset()  # keys whose restores earlier checks asked for or watched


def download(*, live_path: str, start_pos: int, start_time_ms: int, duration_ms: int, location: S3Location,
             paths: ExportPaths, restore: RestorePolicy, wait_for_live: bool, audio_head_ms: float,
             on_progress: Progress) -> Downloaded:
    """The manifest, then only the init and media segments that overlap the clip, in parallel.

    Raises SourceArchived when objects of the range are archived (after asking S3 to restore
    them), and, with `wait_for_live`, RangeNotRecorded when the range goes past the live edge of
    a recording still being made; the export waits and this step runs again later. A check of
    an export that waits on restores (`restore.seen`) HEADs those objects first and waits again,
    without a GET, while any of them is still being restored (still_restoring)."""
    pending = still_restoring(location=location, policy=restore)
    if pending is not None:
        raise pending
    try:
        recording, manifests = fetch_recording(live_path=live_path, location=location)
    except ArchivedObjects as exc:
        raise restore_archived(location=location, keys=exc.keys, policy=restore) from None
    start = clip_start_ms(recording=recording, start_pos=start_pos, start_time_ms=start_time_ms)
    end = start + duration_ms
    if wait_for_live and recording.dynamic and end > recording.duration_ms:
        raise _not_recorded_yet(recording=recording, start_ms=start, end_ms=end, manifests=manifests)
    selection = media.select_segments(recording, start, end, audio_head_ms=audio_head_ms)
    parts = selection.parts()  # what to fetch: each init / segment object, or only its byte range
    segment_keys = {s.name for t in selection.tracks for s in t.segments}
    if not segment_keys:
        raise ExportError(ErrorCode.NO_SUCH_RECORDING,
                          f"not such dir: the recording has no media between {start:.0f} ms and "
                          f"{end:.0f} ms (it covers 0–{recording.duration_ms:.0f} ms)")
    for key, body in manifests.items():
        path = paths.local(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    try:
        # progress by objects: the manifest does not say how large each segment is
        report = download_objects(location=location, keys=parts, path_for=paths.local,
                                  concurrency=settings.EXPORT_DOWNLOAD_CONCURRENCY,
                                  on_object=lambda n: on_progress(n / len(parts)))
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise storage_error(exc, side="source") from exc
    # the look-ahead (a segment past the end, for media presented before it: Selection.lookahead) is
    # optional: when it or what only it needs is missing or archived, it is left out (its other files
    # removed, so that the cut does not read it; no restore waits for it), and nothing else changes
    optional = selection.lookahead
    optional_keys = {getattr(part, "key", part) for part in parts if getattr(part, "name", part) in optional}
    archived = [k for k in report.archived if k not in optional_keys]
    if archived:
        raise restore_archived(location=location, keys=archived, policy=restore)
    missing = [k for k in report.missing if k not in optional]
    if len(missing) < len(report.missing) or len(archived) < len(report.archived):
        for key in optional:
            paths.local(key).unlink(missing_ok=True)
    _refuse_missing_keys(selection, missing, location)
    segment_keys -= optional
    missing_segments = [k for k in missing if k in segment_keys]
    if len(missing_segments) == len(segment_keys) or set(missing) - set(missing_segments):
        raise ExportError(ErrorCode.NO_SUCH_RECORDING,
                          "not such dir: the segments of the requested range are not in the source storage")
    lack = media.lack_length(selection, missing)
    logger.info("downloaded %d files (%d bytes), %d missing, LackLength %d ms",
                report.files, report.bytes, len(report.missing), lack)
    return Downloaded(origin_ms=recording.origin_ms, clip_start_ms=start, lack_ms=lack, files=report.files,
                      bytes=report.bytes, segments_missing=len(missing_segments), selection=selection)


def _refuse_missing_keys(selection: media.Selection, missing: list[str], location: S3Location) -> None:
    """A missing AES-128 key: the recording cannot be decrypted, the storage's fault (-5)."""
    keys = [k for k in missing if k in selection.decryption_keys()]
    if keys:
        raise ExportError(ErrorCode.SOURCE_STORAGE,
                          f"source storage: the AES-128 key {keys[0]} is not in bucket {location.bucket}")


def restore_archived(*, location: S3Location, keys, policy: RestorePolicy) -> SourceArchived:
    """Ask S3 to restore the archived `keys` that no restore is under way for, and say how long to
    wait. A restore that ended before the export read the object, or a tier S3 refuses for the
    object's class, ends the export (-5, naming the object)."""
    client = location.client()
    heads = _archive_states(location, keys)
    states: dict[str, str] = {}
    slowest = 0
    for key, state in heads.items():
        if state is None:
            raise ExportError(ErrorCode.NO_SUCH_RECORDING, f"not such dir: {key} is not in bucket {location.bucket}")
        if state.readable:
            states[key] = "ready"  # restored between the GET and now: the next check reads it
            continue
        if state.restore == "ongoing":
            states[key] = "ongoing"  # asked for by an earlier check, or by someone else
        elif key in policy.seen:
            raise _restore_expired(key, state)
        else:
            try:
                request_restore(client, bucket=location.bucket, key=location.key(key), state=state,
                                tier=policy.tier, days=policy.days, fall_back=False)
            except RestoreRefused as exc:
                raise ExportError(ErrorCode.SOURCE_STORAGE, f"source storage: {key} cannot be restored: {exc}") from exc
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                raise storage_error(exc, side="source") from exc
            states[key] = "requested"
        slowest = max(slowest, typical_restore_seconds(state.storage_class, policy.tier))
    asked = sum(1 for v in states.values() if v == "requested")
    logger.info("%d archived objects: %d restores asked for (%s), %d under way, %d ready", len(states), asked,
                policy.tier, sum(1 for v in states.values() if v == "ongoing"),
                sum(1 for v in states.values() if v == "ready"))
    # all restored between the GETs and the HEADs: read them at once rather than at the next check
    check_in = 1.0 if all(v == "ready" for v in states.values()) else settings.EXPORT_RESTORE_CHECK_SECONDS
    return SourceArchived(f"restoring {len(states)} archived objects of the recording", keys=states,
                          check_in_seconds=check_in, ready_in_seconds=slowest)


def _archive_states(location: S3Location, keys) -> dict[str, ArchiveState | None]:
    """HEAD each of `keys` (in parallel, in their order): its archive state, None when the object is
    not in the bucket; any other failure as storage_error (transient or not, as S3 said)."""
    client = location.client()

    def head(key: str) -> ArchiveState | None:
        try:
            return archive_state(client.head_object(Bucket=location.bucket, Key=location.key(key)))
        except botocore.exceptions.ClientError as exc:
            if is_not_found(exc):
                return None
            raise storage_error(exc, side="source") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise storage_error(exc, side="source") from exc

    keys = list(dict.fromkeys(keys))
    with ThreadPoolExecutor(max_workers=max(1, min(settings.EXPORT_DOWNLOAD_CONCURRENCY, len(keys)))) as pool:
        return dict(zip(keys, pool.map(head, keys), strict=True))


def _restore_expired(key: str, state: ArchiveState) -> ExportError:
    return ExportError(ErrorCode.SOURCE_STORAGE, f"source storage: the restore of {key} ({state.storage_class}) "
                                                 f"expired before the export read it; post the export again")


def still_restoring(*, location: S3Location, policy: RestorePolicy) -> SourceArchived | None:
    """The check of an export that waits on restores (policy.seen): HEAD the objects it waits on and,
    while any of them is still being restored, the SourceArchived to wait again with (their states,
    the usual delay of the tier), so that no GET is made before they are all readable (each would
    only answer InvalidObjectState). None when all are readable (or gone: the download says what
    a missing object means): the download runs. A restore that expired before the export read its
    object ends the export (-5), as in restore_archived."""
    if not policy.seen:
        return None
    states: dict[str, str] = {}
    slowest = 0
    for key, state in _archive_states(location, sorted(policy.seen)).items():
        if state is None:
            continue  # (gone: the download says what a missing object means)
        if state.readable:
            states[key] = "ready"
        elif state.restore == "ongoing":
            states[key] = "ongoing"
            slowest = max(slowest, typical_restore_seconds(state.storage_class, policy.tier))
        else:
            raise _restore_expired(key, state)
    ongoing = sum(1 for v in states.values() if v == "ongoing")
    if not ongoing:
        return None
    logger.info("%d archived objects: %d restores under way, %d ready; no GET until all are ready", len(states),
                ongoing, len(states) - ongoing)
    return SourceArchived(f"restoring {ongoing} archived objects of the recording "
                          f"({len(states) - ongoing} of {len(states)} restored)", keys=states,
                          check_in_seconds=settings.EXPORT_RESTORE_CHECK_SECONDS, ready_in_seconds=slowest)


def _not_recorded_yet(*, recording: media.Recording, start_ms: float, end_ms: float,
                      manifests: dict[str, bytes]) -> RangeNotRecorded:
    """The wait for the live edge to pass `end_ms` (plus one segment, so that the segment holding
    the end is complete and uploaded): from the wall-clock origin when the manifest has one, else
    from the recording time still missing."""
    edge = recording.duration_ms
    last = recording.tracks[0].segments[-1] if recording.tracks[0].segments else None
    segment_ms = (last.end_ms - last.start_ms) if last else 2000.0
    if recording.origin_ms is not None:
        end_wall_ms = recording.origin_ms + end_ms
        ready_in = (end_wall_ms + segment_ms) / 1000.0 - time.time()
    else:
        end_wall_ms = None
        ready_in = (end_ms + segment_ms - edge) / 1000.0
    ready_in = max(ready_in, segment_ms / 1000.0)  # the edge is behind the clock: at least one segment more
    digest = hashlib.sha256(b"".join(name.encode() + b"\0" + body for name, body in sorted(manifests.items())))
    where = "starts" if start_ms >= edge else "ends"
    return RangeNotRecorded(
        f"the range {where} after the live edge ({end_ms:.0f} ms requested, {edge:.0f} ms recorded)",
        edge_ms=edge, end_ms=end_ms, manifest_digest=digest.hexdigest(), end_wall_ms=end_wall_ms,
        check_in_seconds=min(math.ceil(ready_in), settings.EXPORT_LIVE_CHECK_MAX_SECONDS), ready_in_seconds=ready_in)


def selection_in_work_dir(*, live_path: str, clip_start: float, duration_ms: int, paths: ExportPaths,
                          audio_head_ms: float) -> tuple[media.Selection, dict[str, str]]:
    """The segment selection rebuilt on the worker from the manifests kept in the work dir, and
    the downloaded file of each of its keys."""
    recording = media.load_recording(
        lambda key: paths.local(key).read_bytes(), live_path,
        fetch_range=lambda key, first, last: paths.local(media.part_name(key, (first, last))).read_bytes())
    selection = media.select_segments(recording, clip_start, clip_start + duration_ms, audio_head_ms=audio_head_ms)
    return selection, files_in_work_dir(selection=selection, paths=paths)


def files_in_work_dir(*, selection: media.Selection, paths: ExportPaths) -> dict[str, str]:
    """The downloaded file of each key of the selection (a missing segment has none)."""
    return {key: str(paths.local(key)) for key in selection.keys() if paths.local(key).exists()}


# --- cut and encode -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Clip:
    start_ms: float  # where its first frame is, in recording time
    duration_ms: float
    lead_ms: float = 0.0  # how far before the requested start it begins (keyframe cuts)
    skipped_keys: tuple[str, ...] = ()  # damaged segments left out of the clip
    skipped_ms: int = 0  # the recording time they held: LackLength grows by it

    @classmethod
    def of(cls, info: media.ClipInfo, **fields) -> "Clip":
        for segment in info.skipped:
            logger.warning("damaged segment %s skipped: %s", segment.key, segment.reason)
        return cls(start_ms=info.start_ms, duration_ms=info.duration_ms, skipped_ms=int(info.skipped_ms),
                   skipped_keys=tuple(dict.fromkeys(segment.key for segment in info.skipped)), **fields)


def cut(*, selection: media.Selection, files: dict[str, str], paths: ExportPaths, container: str, mode: str,
        on_progress: Progress) -> Clip:
    """A copy export: stream copy, with the partial GOPs at both ends re-encoded in the source's codec
    (mode "accurate"), or from the keyframe at or before the start (mode "keyframe")."""
    paths.output.parent.mkdir(parents=True, exist_ok=True)
    info = _media(media.cut_clip, selection=selection, files=files, out_path=str(paths.output), container=container,
                  mode=mode, on_progress=on_progress)
    return Clip.of(info, lead_ms=info.lead_ms)


def encode(*, selection: media.Selection, files: dict[str, str], paths: ExportPaths, codec: str, container: str,
           on_progress: Progress) -> Clip:
    """A transcode, decoded straight from the downloaded segments (no intermediate file). A clip
    already encoded by an attempt that was stopped before it was recorded is kept."""
    if paths.output.exists():
        return Clip(start_ms=selection.start_ms, duration_ms=_media(media.probe, path=str(paths.output)).duration_ms)
    paths.output.parent.mkdir(parents=True, exist_ok=True)
    preset = settings.MEDIA_H264_PRESET if codec == "h264" else settings.MEDIA_H265_PRESET
    info = _media(media.encode_selection, selection=selection, files=files, out_path=str(paths.output), codec=codec,
                  container=container, preset=preset, crf=settings.MEDIA_CRF, threads=settings.MEDIA_THREADS,
                  hwaccel=settings.MEDIA_HWACCEL, on_progress=on_progress)
    return Clip.of(info)


# --- thumbnail ----------------------------------------------------------------------------------

def numbered_name(name: str, n: int) -> str:
    """`name` for n = 0, else `<stem>_<n><ext>`: the free names of a clip or a thumbnail."""
    if n == 0:
        return name
    ext = PurePosixPath(name).suffix
    return f"{name[: len(name) - len(ext)]}_{n}{ext}"


def _store_image(*, jpeg: Path, path: str, name: str, uploader: str, owner: str) -> str:
    """The JPEG in the image bed under `name`, or the first numbered name that is not another
    user's image (a thumbnail never replaces someone else's)."""
    data = jpeg.read_bytes()
    for n in range(MAX_NAME_SUFFIX):
        candidate = numbered_name(name, n)
        try:
            image_save_bytes(path=path, filename=candidate, data=data, uploader=uploader, owner=owner)
        except ImageNotAllowed:
            continue
        except ImageStorageError as exc:
            raise TransientExportError(ErrorCode.INTERNAL, f"image bed unavailable: {exc.message}") from exc
        return image_url(path=path, filename=candidate)
    raise ExportError(ErrorCode.INTERNAL,
                      f"image bed: {path}/{name} and {MAX_NAME_SUFFIX - 1} numbered names are other users' images")


def thumbnail(*, paths: ExportPaths, uploader: str, owner: str) -> str:
    """The clip's first frame as a JPEG in the image bed; returns its ImagePath."""
    if not paths.thumbnail.exists():
        paths.thumbnail.parent.mkdir(parents=True, exist_ok=True)
        _media(media.thumbnail, src_path=str(paths.output), out_path=str(paths.thumbnail),
               max_size=settings.THUMBNAIL_MAX_SIZE, quality=settings.THUMBNAIL_QUALITY)
    return _store_image(jpeg=paths.thumbnail, path=paths.image_dir, name=paths.image_name, uploader=uploader,
                        owner=owner)


# --- upload -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Uploaded:
    video_key: str
    video_path: str
    output_bytes: int


def free_name(*, location: S3Location, key: str, writer: str, start: int = 0) -> tuple[int, bool]:
    """The smallest n >= `start` whose numbered_name(key, n) holds no object, or an object that
    `writer` wrote itself (a redelivered upload: it is written again); and whether it is ours."""
    client = location.client()
    for n in range(start, MAX_NAME_SUFFIX):
        try:
            head = client.head_object(Bucket=location.bucket, Key=location.key(numbered_name(key, n)))
        except botocore.exceptions.ClientError as exc:
            if is_not_found(exc):
                return n, False
            raise storage_error(exc, side="destination") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise storage_error(exc, side="destination") from exc
        if head.get("Metadata", {}).get(WRITER_METADATA) == writer:
            return n, True
    raise ExportError(ErrorCode.DESTINATION, f"destination: {key} and {MAX_NAME_SUFFIX - 1} numbered names are taken")


def upload(*, paths: ExportPaths, location: S3Location, writer: str, on_progress: Progress) -> Uploaded:
    """The clip to the destination bucket under its key or, when another object is there, the
    first free numbered name. The write is conditional (If-None-Match), so an object another
    writer puts there between the look and the write is not replaced either: the next name is
    taken then."""
    size = paths.output.stat().st_size
    sent = {"bytes": 0}

    def chunk_sent(n: int) -> None:
        sent["bytes"] += n
        if size:
            on_progress(min(sent["bytes"] / size, 1.0))

    extra = {"ContentType": paths.content_type, "Metadata": {WRITER_METADATA: writer}}
    start = 0
    while True:
        n, ours = free_name(location=location, key=paths.video_key, writer=writer, start=start)
        key = numbered_name(paths.video_key, n)
        try:
            upload_if_absent(location=location, key=key, path=paths.output, extra=extra, on_bytes=chunk_sent,
                             overwrite=ours)
        except ObjectExists:
            logger.info("%s was written by someone else meanwhile; trying the next name", key)
            start, sent["bytes"] = n + 1, 0
            continue
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise storage_error(exc, side="destination") from exc
        return Uploaded(video_key=key, video_path="/" + key, output_bytes=size)


def remove_upload(*, location: S3Location, key: str, writer: str) -> None:
    """Delete the clip at `key` if `writer` wrote it (a failed export takes back what it uploaded;
    anything else there is left alone)."""
    client = location.client()
    try:
        head = client.head_object(Bucket=location.bucket, Key=location.key(key))
    except botocore.exceptions.ClientError as exc:
        if is_not_found(exc):
            return
        raise
    if head.get("Metadata", {}).get(WRITER_METADATA) == writer:
        client.delete_object(Bucket=location.bucket, Key=location.key(key))
        logger.info("%s removed: its export failed", key)


# --- getthumbnail: one frame at a position of a recording ------------------------------------------

def frame_thumbnail(*, live_path: str, start_pos: int, start_time_ms: int, location: S3Location,
                    image_dir: str, image_name: str, uploader: str, owner: str) -> str:
    """Fetch the segment that holds the position, decode the frame, store it in the image bed;
    returns its ImagePath."""
    recording, _manifests = fetch_recording(live_path=live_path, location=location)
    position = clip_start_ms(recording=recording, start_pos=start_pos, start_time_ms=start_time_ms)
    selection = media.select_segments(recording, position, position + 1, lookahead_ms=0)
    if not any(t.segments for t in selection.tracks):
        raise ExportError(ErrorCode.NO_SUCH_RECORDING, f"not such dir: the recording has no media at {position:.0f} ms")
    # the picture only: the first (video or muxed) track
    video_only = media.Selection(start_ms=selection.start_ms, end_ms=selection.end_ms,
                                 tracks=selection.tracks[:1], lack_ms=selection.lack_ms)
    keys = video_only.keys()
    scratch = Path(settings.EXPORT_WORK_DIR)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="thumb-") as tmp:
        files = Path(tmp) / "files"
        try:
            report = download_objects(location=location, keys=video_only.parts(), path_for=lambda key: files / key,
                                      concurrency=settings.EXPORT_DOWNLOAD_CONCURRENCY)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise storage_error(exc, side="source") from exc
        if report.archived:
            raise ArchivedObjects(report.archived)
        _refuse_missing_keys(video_only, report.missing, location)
        if report.missing:
            raise ExportError(ErrorCode.NO_SUCH_RECORDING,
                              "not such dir: the segment at that position is not in the source storage")
        jpeg = Path(tmp) / "frame.jpg"
        _media(media.thumbnail_from_selection, selection=video_only, files={k: str(files / k) for k in keys},
               out_path=str(jpeg), max_size=settings.THUMBNAIL_MAX_SIZE, quality=settings.THUMBNAIL_QUALITY)
        return _store_image(jpeg=jpeg, path=image_dir, name=image_name, uploader=uploader, owner=owner)
