"""The ErrorCode values of export-to-s3dir (docs/api.md §1) and the errors of an export."""

from enum import IntEnum

from resourced.errors import ServiceError


class ErrorCode(IntEnum):
    PROCESSING = 1
    READY = 5
    NO_SUCH_RECORDING = -1
    INVALID = -2
    AUTH = -3
    QUOTA = -4
    SOURCE_STORAGE = -5
    DESTINATION = -6
    MEDIA = -7
    CANCELLED = -8
    INTERNAL = -9

    @property
    def meaning(self) -> str:
        return MEANINGS[self]


MEANINGS = {
    ErrorCode.PROCESSING: "processing",
    ErrorCode.READY: "ready",
    ErrorCode.NO_SUCH_RECORDING: "no such recording",
    ErrorCode.INVALID: "invalid request",
    ErrorCode.AUTH: "authentication failed",
    ErrorCode.QUOTA: "over quota",
    ErrorCode.SOURCE_STORAGE: "source storage unreachable or denied",
    ErrorCode.DESTINATION: "destination upload failed",
    ErrorCode.MEDIA: "media could not be decoded or encoded",
    ErrorCode.CANCELLED: "cancelled",
    ErrorCode.INTERNAL: "internal error",
}


def meaning(code: int) -> str:
    try:
        return ErrorCode(code).meaning
    except ValueError:
        return "unknown"


class ExportError(ServiceError):
    """A final failure of an export, with its ErrorCode."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message, kind="export")
        self.code = ErrorCode(code)


class TransientExportError(Exception):
    """A failure worth retrying (network, 5xx, an image bed outage): the step is retried with
    backoff, and the export fails with `code` when the retries are spent."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message


class ExportFailed(Exception):
    """Raised by a task once its export is recorded as failed, so that Celery stores (and Flower
    shows) the task as FAILURE. Not retried (it is no TransientExportError) and not delivered
    again (acks_late redelivers only a task whose worker was lost)."""


class SourceNotReady(Exception):
    """The recording cannot be exported yet, and nothing failed: the export waits (no worker
    does) and its download runs again at `check_in_seconds`."""

    stage = ""  # the Stage the export shows meanwhile

    def __init__(self, message: str, *, check_in_seconds: float, ready_in_seconds: float):
        super().__init__(message)
        self.message = message
        self.check_in_seconds = check_in_seconds  # when to look again
        self.ready_in_seconds = ready_in_seconds  # when it is likely ready (the answer's TimeWait)


class SourceArchived(SourceNotReady):
    """Objects of the range are in an archive storage class; their restores are asked for (or
    were already under way)."""

    stage = "restoring"

    def __init__(self, message: str, *, keys: dict[str, str], check_in_seconds: float, ready_in_seconds: float):
        super().__init__(message, check_in_seconds=check_in_seconds, ready_in_seconds=ready_in_seconds)
        self.keys = keys  # storage key -> "requested" (by this check), "ongoing" or "ready"


class RangeNotRecorded(SourceNotReady):
    """The range ends (or starts) after the live edge of a recording still being recorded."""

    stage = "waiting"

    def __init__(self, message: str, *, edge_ms: float, end_ms: float, manifest_digest: str,
                 end_wall_ms: float | None, check_in_seconds: float, ready_in_seconds: float):
        super().__init__(message, check_in_seconds=check_in_seconds, ready_in_seconds=ready_in_seconds)
        self.edge_ms = edge_ms  # the live edge, in recording time
        self.end_ms = end_ms  # the requested end, in recording time
        self.manifest_digest = manifest_digest  # changes when the packager rewrites the manifest
        self.end_wall_ms = end_wall_ms  # the requested end in wall-clock epoch ms, when the manifest says
