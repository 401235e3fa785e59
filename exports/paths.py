"""Where an export's files live: its work dir on the worker, the clip's object key, the thumbnail's
place in the image bed. Built once per export (ExportPaths.of) and passed to the steps."""

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.conf import settings

CONTAINER_EXTENSIONS = {"ts": ".ts", "mp4": ".mp4"}
CONTENT_TYPES = {"ts": "video/mp2t", "mp4": "video/mp4"}


def live_path_parts(live_path: str) -> list[str]:
    return [part for part in PurePosixPath(live_path).parts if part not in ("", "/")]


def recording_name(live_path: str) -> str:
    """The recording element of LivePath (`<purpose>/<peer>/<recording>/…`)."""
    parts = live_path_parts(live_path)
    return parts[2] if len(parts) > 2 else (parts[-2] if len(parts) > 1 else "recording")


def output_file_name(*, file_name: str, export_format: str, peer_id: str, recording: str, start_pos: int,
                     duration_ms: int) -> str:
    extension = CONTAINER_EXTENSIONS[export_format]
    base = file_name or f"{peer_id}_{recording}_{start_pos}_{duration_ms}"
    if PurePosixPath(base).suffix.lower() in CONTAINER_EXTENSIONS.values():
        return base
    return base + extension


def work_dir_of(task_id: str) -> Path:
    return Path(settings.EXPORT_WORK_DIR) / task_id


@dataclass(frozen=True)
class ExportPaths:
    work_dir: Path
    file_name: str  # the clip's file name
    video_key: str  # its key in the destination bucket
    content_type: str
    image_dir: str  # the thumbnail's path and file name in the image bed
    image_name: str

    @classmethod
    def of(cls, export) -> "ExportPaths":
        recording = recording_name(export.live_path)
        file_name = output_file_name(
            file_name=export.file_name, export_format=export.export_format, peer_id=export.peer_id,
            recording=recording, start_pos=export.start_pos, duration_ms=export.duration_ms,
        )
        return cls(
            work_dir=work_dir_of(export.task_id),
            file_name=file_name,
            video_key=f"{settings.EXPORT_S3_DIR.strip('/')}/{export.peer_id}/{file_name}",
            content_type=CONTENT_TYPES[export.export_format],
            image_dir=export.peer_id,
            image_name=f"{export.peer_id}_{recording}_{export.start_pos}_{export.duration_ms}.jpg",
        )

    @property
    def files_dir(self) -> Path:
        """Downloaded manifests and segments, under their storage keys."""
        return self.work_dir / "files"

    def local(self, key: str) -> Path:
        return self.files_dir / key.lstrip("/")

    @property
    def output(self) -> Path:
        return self.work_dir / "out" / self.file_name

    @property
    def thumbnail(self) -> Path:
        return self.work_dir / "thumb" / self.image_name
