"""The image bed's domain errors and the JSON shapes they take (docs/api.md §2).

Two families, one per endpoint group:

* upload, list and image reads answer ``ErrorCode``/``ErrorMessage`` (upload adds ``FailedFiles``);
* delete answers ``errCode``/``message``, the field names of the user's own document.

Codes (documented in docs/client/imgbed.md):

=========  ================  ===============  ====
kind       upload/list/GET   delete           HTTP
=========  ================  ===============  ====
(success)  0                 0                200
(partial)  1 (FailedFiles)   -                200
not_found  4                 1                404
invalid    2                 2                400
auth       3                 3                401 (403: another user's image)
internal   5                 5                5xx
=========  ================  ===============  ====
"""

from rest_framework import status as http

from resourced.errors import ErrorFamily, InvalidInput, NotFound, ServiceError

_CODES = {"invalid": 2, "conflict": 2, "auth": 3, "not_found": 4, "quota": 6, "internal": 5}

IMGBED_ERRORS = ErrorFamily("ErrorCode", "ErrorMessage", dict(_CODES))
IMGBED_UPLOAD_ERRORS = ErrorFamily("ErrorCode", "ErrorMessage", dict(_CODES),
                                   base=lambda: {"FailedFiles": [], "Failures": []})
IMGBED_DELETE_ERRORS = ErrorFamily(
    "errCode",
    "message",
    {"not_found": 1, "invalid": 2, "conflict": 2, "auth": 3, "quota": 6, "internal": 5},
)

UPLOAD_OK = 0
UPLOAD_SOME_REFUSED = 1


class ImageError(ServiceError):
    """Base of every image bed error."""


class ImageRejected(ImageError, InvalidInput):
    """The image (its name, its size or its content) is refused; nothing was written."""


class ImagePathInvalid(ImageRejected):
    """A path or file name is not safe (``..``, backslash, control character, too long, …)."""


class ImageNotAllowed(ImageRejected):
    """Another user's image: not replaced, not deleted (errCode 3, HTTP 403)."""

    kind = "auth"
    status = http.HTTP_403_FORBIDDEN


class ImageNotFound(ImageError, NotFound):
    pass


class ImageStorageError(ImageError):
    """The object store failed or is unreachable."""

    kind = "internal"
    status = http.HTTP_503_SERVICE_UNAVAILABLE
