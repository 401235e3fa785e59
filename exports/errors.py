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
