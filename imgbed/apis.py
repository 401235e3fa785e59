"""The image bed's HTTP API (docs/api.md §2). Thin: validate, call one service or selector, answer.

Errors are raised by the services and turned into each endpoint's JSON by resourced.errors'
handler through the view's ``error_family``.
"""

from django.conf import settings
from django.contrib.auth import get_user
from django.http import HttpResponse, StreamingHttpResponse
from django.utils.cache import get_conditional_response
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from imgbed.errors import (
    IMGBED_DELETE_ERRORS,
    IMGBED_ERRORS,
    IMGBED_UPLOAD_ERRORS,
    UPLOAD_OK,
    UPLOAD_SOME_REFUSED,
    ImageError,
    ImagePathInvalid,
)
from imgbed.models import Image
from imgbed.paths import MAX_KEY_BYTES, clean_filename, clean_path
from imgbed.selectors import image_get, image_list
from imgbed.services import image_delete, image_upload, image_url
from imgbed.storage import object_stream
from imgbed.uploads import ImageUploadParser, upload_admit
from resourced.parsers import BoundedJSONParser
from resourced.schema import error_response
from resourced.sessions import SESSION_REQUIRED, authenticate, session_user

# --- fields ----------------------------------------------------------------------------------


class ImagePathField(serializers.CharField):
    """A relative image path, checked by imgbed.paths.clean_path."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    clean = staticmethod(clean_path)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            return self.clean(value)
        except ImagePathInvalid as exc:
            raise serializers.ValidationError(exc.message) from exc


class ImageNameField(ImagePathField):
    clean = staticmethod(clean_filename)


# --- schema helpers --------------------------------------------------------------------------

# the seeds' image (the ImagePath of their export-to-s3dir answer; the delete document's fields)
SEED_IMAGE_PATH = "4B999DC458FBC4C80000000000000002"
SEED_IMAGE_NAME = ("4B999DC458FBC4C80000000000000002_20200316-02-21-49_4B999DC458FBC4C80000000000000002_"
                   "FE31F2B2CEAA2E63_4b13335c-2fc1-45ea-9cb5-f92065a26e91_1584973791094_7170000.jpg")
SEED_SESSION_ID = "2A39603DDB0F47CFB32E96C8366084AE"
_SESSION_FIELD_HELP = ("The session, when it is not sent in the X-Session-Id header (Authorize); the header is used "
                       "when both are sent.")
_PATH_HELP = ("The image's path: relative, '/'-separated (a single leading slash is ignored); no '.' or '..' "
              f"components, backslashes or control characters; at most {MAX_KEY_BYTES} bytes with the file name.")
PATH_PARAMETER = OpenApiParameter("path", OpenApiTypes.STR, OpenApiParameter.PATH, description=_PATH_HELP,
                                  examples=[OpenApiExample("seeds", summary="The seeds' image path", value=SEED_IMAGE_PATH)])


@extend_schema_field(OpenApiTypes.BINARY)
class _FormFileField(serializers.FileField):
    """A file of the upload form as the schema shows it: binary, a file picker in /api/docs/ (a plain
    FileField is shown as a URL)."""


_UPLOAD_REQUEST = inline_serializer(
    "ImgbedUploadRequest",
    {
        "SessionId": serializers.CharField(
            required=False, max_length=256,
            help_text=_SESSION_FIELD_HELP + " In the body it must come before the files, within its first 64 kB."),
        "file": serializers.ListField(
            child=_FormFileField(),
            help_text="One or more images (JPEG, PNG, GIF or WebP by content), in any field names, each stored at "
                      "<path>/<its file name>; at most IMGBED_MAX_BYTES each (default 10 MiB), "
                      "IMGBED_MAX_UPLOAD_BYTES in all (default 64 MiB)."),
    },
)
_DELETE_REQUEST = inline_serializer(
    "ImgbedDeleteRequest",
    {
        "path": serializers.CharField(max_length=MAX_KEY_BYTES, help_text="The path the image was uploaded to. "
                                      + _PATH_HELP.split(": ", 1)[1]),
        "filename": serializers.CharField(
            max_length=255, help_text="The name of the image, ending in .jpg, .jpeg, .png, .gif or .webp; no '/'."),
        "SessionId": serializers.CharField(required=False, max_length=256, help_text=_SESSION_FIELD_HELP),
    },
)
_ERROR = inline_serializer("ImgbedError", {"ErrorCode": serializers.IntegerField(), "ErrorMessage": serializers.CharField()})
_DELETE_ANSWER = inline_serializer("ImgbedDeleteAnswer", {"errCode": serializers.IntegerField(), "message": serializers.CharField()})
_UPLOAD_ANSWER = inline_serializer(
    "ImgbedUploadAnswer",
    {
        "ErrorCode": serializers.IntegerField(help_text="0 all stored, 1 some refused (FailedFiles), 2 invalid request, 3 authentication"),
        "ErrorMessage": serializers.CharField(),
        "FailedFiles": serializers.ListField(child=serializers.CharField()),
        "Failures": serializers.ListField(
            child=inline_serializer("ImgbedUploadFailure", {"name": serializers.CharField(), "reason": serializers.CharField()})
        ),
    },
)


# --- access to reads -------------------------------------------------------------------------


def _check_read_access(request) -> None:
    """Reads are public unless IMGBED_PUBLIC_READ is false; then a SessionId (header, query or
    body) or a staff user of the admin is needed."""
    if settings.IMGBED_PUBLIC_READ:
        return
    # DRF replaced request.user (no DRF authenticators here): read the admin's session directly.
    user = get_user(request._request)
    if user.is_authenticated and user.is_staff:
        return
    session_id = request.query_params.get("SessionId")
    if session_id:
        session_user(session_id=session_id)
    else:
        authenticate(request)


def _cache_headers(response, image: Image) -> None:
    response["ETag"] = image.etag
    response["Last-Modified"] = http_date(image.updated.timestamp())
    scope = "public" if settings.IMGBED_PUBLIC_READ else "private"
    response["Cache-Control"] = f"{scope}, max-age={settings.IMGBED_CACHE_SECONDS}"


def _image_response(request, image: Image, *, head: bool):
    """304 for a matching conditional request; the headers alone for HEAD; else the streamed bytes."""
    conditional = get_conditional_response(
        request, etag=image.etag, last_modified=int(image.updated.timestamp())
    )
    if conditional is not None and conditional.status_code == 412:  # If-Match / If-Unmodified-Since
        raise ImageError("precondition failed: the image has another ETag or is newer", kind="conflict", status=412)
    if conditional is not None:
        _cache_headers(conditional, image)
        return conditional
    if head:
        response = HttpResponse(content_type=image.content_type)
        response["Content-Length"] = str(image.size)
    else:
        stream = object_stream(key=image.key)
        response = StreamingHttpResponse(stream, content_type=image.content_type)
        response["Content-Length"] = str(stream.length)
    response["X-Content-Type-Options"] = "nosniff"
    _cache_headers(response, image)
    return response


# --- views -----------------------------------------------------------------------------------


class ImageUploadApi(APIView):
    error_family = IMGBED_UPLOAD_ERRORS
    # Multipart only, read within the upload limits (imgbed/uploads.py). A urlencoded form has no
    # files to upload: it is refused (415) unread rather than parsed into memory.
    parser_classes = [ImageUploadParser]

    class InputSerializer(serializers.Serializer):
        path = ImagePathField()
        files = serializers.ListField(
            child=serializers.FileField(allow_empty_file=True, use_url=False),
            allow_empty=False,
            error_messages={"empty": "no files in the request", "required": "no files in the request"},
        )

    def perform_authentication(self, request):
        # before SessionIdAuthentication, which reads the body when there is no X-Session-Id
        # header: the header's session and the declared size are checked before a byte is read
        upload_admit(request)
        super().perform_authentication(request)

    @extend_schema(
        operation_id="imgbed_upload",
        summary="Upload images to <path>",
        description=(
            "Multipart form; every file, in any field name, is stored at `<path>/<its file name>`. "
            "The type is decided by content (JPEG, PNG, GIF, WebP); at most IMGBED_MAX_BYTES per file. "
            "Refused files are named in FailedFiles (ErrorCode 1); the others are stored. A body over "
            "IMGBED_MAX_UPLOAD_BYTES is refused with 413 (ErrorCode 2) before it is read; without the "
            "X-Session-Id header, the SessionId field must come within the first 64 kB (before the files)."
        ),
        request={"multipart/form-data": _UPLOAD_REQUEST},
        parameters=[PATH_PARAMETER],
        examples=[OpenApiExample("session", summary="The session in the form", value={"SessionId": SEED_SESSION_ID},
                                 request_only=True, media_type="multipart/form-data")],
        responses={
            200: OpenApiResponse(_UPLOAD_ANSWER, description="ErrorCode 0: every file stored; 1: the files in "
                                 "FailedFiles were refused (Failures says why), the others stored"),
            400: error_response(_UPLOAD_ANSWER, IMGBED_UPLOAD_ERRORS, "invalid", "bad path or no files (ErrorCode 2)",
                                "files: no files in the request", "path: path: '..' components are not allowed"),
            401: error_response(_UPLOAD_ANSWER, IMGBED_UPLOAD_ERRORS, "auth", "no valid session (ErrorCode 3)",
                                SESSION_REQUIRED, "SessionId: unknown or expired"),
            413: error_response(_UPLOAD_ANSWER, IMGBED_UPLOAD_ERRORS, "invalid",
                                "body over IMGBED_MAX_UPLOAD_BYTES, refused unread (ErrorCode 2)",
                                "body: 300000000 bytes, over the upload limit of 67108864 bytes"),
            415: error_response(_UPLOAD_ANSWER, IMGBED_UPLOAD_ERRORS, "invalid", "not multipart/form-data (ErrorCode 2)",
                                'Content-Type: Unsupported media type "application/x-www-form-urlencoded" in request.'),
        },
        tags=["imgbed"],
    )
    def post(self, request, path: str):
        uploader = request.user.userid
        files = [upload for _field, uploads in request.FILES.lists() for upload in uploads]
        serializer = self.InputSerializer(data={"path": path, "files": files})
        serializer.is_valid(raise_exception=True)
        refused = image_upload(uploader=uploader, **serializer.validated_data)
        return Response(
            {
                "ErrorCode": UPLOAD_SOME_REFUSED if refused else UPLOAD_OK,
                "ErrorMessage": f"{len(refused)} of {len(files)} files refused" if refused else "success",
                "FailedFiles": [r.name for r in refused],
                "Failures": [{"name": r.name, "reason": r.reason} for r in refused],
            }
        )


class ImageDeleteApi(APIView):
    error_family = IMGBED_DELETE_ERRORS
    # the request is small JSON: read within API_MAX_JSON_BYTES (413 beyond), never a form into memory
    parser_classes = [BoundedJSONParser]

    class InputSerializer(serializers.Serializer):
        path = ImagePathField()
        filename = ImageNameField()


    @extend_schema(
        operation_id="imgbed_delete",
        summary="Delete the image <path>/<filename>",
        description="errCode 0 success, 1 no such image (HTTP 404), 2 bad path or filename (HTTP 400), 3 authentication (HTTP 401) or another user's image (HTTP 403).",
        request=_DELETE_REQUEST,
        examples=[
            OpenApiExample("required", summary="The seeds' image",
                           value={"path": SEED_IMAGE_PATH, "filename": SEED_IMAGE_NAME}, request_only=True,
                           description="The session comes from Authorize (the X-Session-Id header)."),
            OpenApiExample("session", summary="With the session in the body", request_only=True,
                           value={"path": SEED_IMAGE_PATH, "filename": SEED_IMAGE_NAME, "SessionId": SEED_SESSION_ID}),
        ],
        responses={
            200: OpenApiResponse(_DELETE_ANSWER, description="errCode 0: deleted"),
            400: error_response(_DELETE_ANSWER, IMGBED_DELETE_ERRORS, "invalid", "bad path or filename (errCode 2)",
                                "filename: filename: must be a name ending in .jpg, .jpeg, .png, .gif, .webp"),
            401: error_response(_DELETE_ANSWER, IMGBED_DELETE_ERRORS, "auth", "no valid session (errCode 3)",
                                SESSION_REQUIRED, "SessionId: unknown or expired"),
            403: error_response(_DELETE_ANSWER, IMGBED_DELETE_ERRORS, "auth", "another user's image (errCode 3)",
                                f"{SEED_IMAGE_PATH}/{SEED_IMAGE_NAME}: another user's image; not allowed"),
            404: error_response(_DELETE_ANSWER, IMGBED_DELETE_ERRORS, "not_found", "no such image (errCode 1)",
                                f"{SEED_IMAGE_PATH}/{SEED_IMAGE_NAME}: no such image"),
            413: error_response(_DELETE_ANSWER, IMGBED_DELETE_ERRORS, "invalid",
                                "body over API_MAX_JSON_BYTES, refused unread (errCode 2)",
                                "body: 2000000 bytes, over the limit of 1048576"),
        },
        tags=["imgbed"],
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        image_delete(owner=request.user.userid, **serializer.validated_data)
        return Response({"errCode": 0, "message": "success"})


class ImageListApi(APIView):
    error_family = IMGBED_ERRORS

    class InputSerializer(serializers.Serializer):
        path = ImagePathField()
        recursive = serializers.BooleanField(default=False)
        limit = serializers.IntegerField(min_value=1, max_value=1000, default=1000)
        offset = serializers.IntegerField(min_value=0, max_value=2**31, default=0)

    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField(source="filename")
        path = serializers.CharField()
        size = serializers.IntegerField()
        content_type = serializers.CharField()
        width = serializers.IntegerField()
        height = serializers.IntegerField()
        url = serializers.SerializerMethodField()
        etag = serializers.CharField()
        created = serializers.DateTimeField()
        updated = serializers.DateTimeField()

        def get_url(self, image: Image) -> str:
            return image_url(path=image.path, filename=image.filename)

    @extend_schema(
        operation_id="imgbed_list",
        summary="List the images under <path>",
        parameters=[
            PATH_PARAMETER,
            OpenApiParameter("recursive", OpenApiTypes.BOOL, description="Include the images of sub paths.",
                             default=False, examples=[OpenApiExample("all", summary="sub paths too", value=True)]),
            OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                             description="At most this many images (1-1000).", default=1000,
                             examples=[OpenApiExample("page", summary="a page of 100", value=100)]),
            OpenApiParameter("offset", {"type": "integer", "minimum": 0, "maximum": 2**31},
                             description="Skip this many images (the order is stable).", default=0,
                             examples=[OpenApiExample("page", summary="the second page", value=100)]),
        ],
        responses={
            200: inline_serializer(
                "ImgbedListAnswer",
                {
                    "ErrorCode": serializers.IntegerField(),
                    "ErrorMessage": serializers.CharField(),
                    "Path": serializers.CharField(),
                    "Total": serializers.IntegerField(),
                    "Images": OutputSerializer(many=True),
                },
            ),
            400: error_response(_ERROR, IMGBED_ERRORS, "invalid", "bad path or parameter (ErrorCode 2)",
                                "limit: Ensure this value is less than or equal to 1000."),
            401: error_response(_ERROR, IMGBED_ERRORS, "auth", "no valid session (ErrorCode 3)",
                                SESSION_REQUIRED, "SessionId: unknown or expired"),
        },
        tags=["imgbed"],
    )
    def get(self, request, path: str):
        serializer = self.InputSerializer(data={**request.query_params.dict(), "path": path})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        images = image_list(path=data["path"], recursive=data["recursive"])
        page = images[data["offset"]: data["offset"] + data["limit"]]
        return Response(
            {
                "ErrorCode": 0,
                "ErrorMessage": "success",
                "Path": data["path"],
                "Total": images.count(),
                "Images": self.OutputSerializer(page, many=True).data,
            }
        )


_IMAGE_PARAMETERS = [
    PATH_PARAMETER,
    OpenApiParameter("filename", OpenApiTypes.STR, OpenApiParameter.PATH, description="ends in .jpg, .jpeg, .png, .gif or .webp",
                     pattern=r"^[^/]+\.([jJ][pP][eE]?[gG]|[pP][nN][gG]|[gG][iI][fF]|[wW][eE][bB][pP])$",
                     examples=[OpenApiExample("seeds", summary="The seeds' image", value=SEED_IMAGE_NAME)]),
    OpenApiParameter("SessionId", OpenApiTypes.STR, description="only when IMGBED_PUBLIC_READ is false, and not "
                     "sent in the X-Session-Id header"),
    OpenApiParameter("If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER),
    OpenApiParameter("If-Modified-Since", OpenApiTypes.STR, OpenApiParameter.HEADER),
]
_IMAGE_RESPONSES = {
    **{(200, content_type): OpenApiTypes.BINARY for content_type in ("image/jpeg", "image/png", "image/gif", "image/webp")},
    304: OpenApiResponse(description="not modified"),
    400: error_response(_ERROR, IMGBED_ERRORS, "invalid", "bad path or file name (ErrorCode 2)",
                        "path: '..' components are not allowed"),
    401: error_response(_ERROR, IMGBED_ERRORS, "auth", "no valid session, when IMGBED_PUBLIC_READ is false (ErrorCode 3)",
                        SESSION_REQUIRED, "SessionId: unknown or expired"),
    404: error_response(_ERROR, IMGBED_ERRORS, "not_found", "no such image (ErrorCode 4)",
                        f"{SEED_IMAGE_PATH}/{SEED_IMAGE_NAME}: no such image"),
}


class ImageServeApi(APIView):
    """GET <IMGBED_URL_PREFIX><path>/<filename>: the image's bytes, streamed from the object store."""

    error_family = IMGBED_ERRORS
    # public unless IMGBED_PUBLIC_READ is false: _check_read_access decides, and reads the session then
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(operation_id="imgbed_image_get", summary="Fetch an image", parameters=_IMAGE_PARAMETERS,
                   responses=_IMAGE_RESPONSES, tags=["imgbed"], auth=[{"SessionId": []}, {}])
    def get(self, request, path: str, filename: str):
        _check_read_access(request)
        return _image_response(request, image_get(path=path, filename=filename), head=False)

    @extend_schema(operation_id="imgbed_image_head", summary="An image's headers", parameters=_IMAGE_PARAMETERS,
                   responses=_IMAGE_RESPONSES, tags=["imgbed"])
    def head(self, request, path: str, filename: str):
        _check_read_access(request)
        return _image_response(request, image_get(path=path, filename=filename), head=True)
