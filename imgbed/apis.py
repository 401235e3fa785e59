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
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
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
from imgbed.paths import clean_filename, clean_path
from imgbed.selectors import image_get, image_list
from imgbed.services import image_delete, image_upload, image_url
from imgbed.storage import object_stream
from imgbed.uploads import ImageUploadParser, upload_admit
from resourced.sessions import authenticate, session_user

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

SESSION_HEADER = OpenApiParameter(
    "X-Session-Id", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="SessionId, when it is not sent in the body",
)
_UPLOAD_REQUEST = inline_serializer(
    "ImgbedUploadRequest",
    {
        "SessionId": serializers.CharField(required=False, help_text="or the X-Session-Id header"),
        "file": serializers.ListField(child=serializers.FileField(), help_text="one or more files, in any field names"),
    },
)
_DELETE_REQUEST = inline_serializer(
    "ImgbedDeleteRequest",
    {
        "path": serializers.CharField(help_text="relative path; a single leading slash is ignored"),
        "filename": serializers.CharField(),
        "SessionId": serializers.CharField(required=False, help_text="or the X-Session-Id header"),
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

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        upload_admit(request)  # before request.data: the header's session and the declared size

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
        parameters=[OpenApiParameter("path", OpenApiTypes.STR, OpenApiParameter.PATH), SESSION_HEADER],
        responses={200: _UPLOAD_ANSWER, 400: _UPLOAD_ANSWER, 401: _UPLOAD_ANSWER, 413: _UPLOAD_ANSWER,
                   415: _UPLOAD_ANSWER},
        tags=["imgbed"],
    )
    def post(self, request, path: str):
        uploader = authenticate(request)
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
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    class InputSerializer(serializers.Serializer):
        path = ImagePathField()
        filename = ImageNameField()


    @extend_schema(
        operation_id="imgbed_delete",
        summary="Delete the image <path>/<filename>",
        description="errCode 0 success, 1 no such image (HTTP 404), 2 bad path or filename (HTTP 400), 3 authentication (HTTP 401) or another user's image (HTTP 403).",
        request=_DELETE_REQUEST,
        parameters=[SESSION_HEADER],
        responses={200: _DELETE_ANSWER, 400: _DELETE_ANSWER, 401: _DELETE_ANSWER, 403: _DELETE_ANSWER,
                   404: _DELETE_ANSWER},
        tags=["imgbed"],
    )
    def post(self, request):
        owner = authenticate(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        image_delete(owner=owner, **serializer.validated_data)
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
            OpenApiParameter("path", OpenApiTypes.STR, OpenApiParameter.PATH),
            OpenApiParameter("recursive", OpenApiTypes.BOOL, description="include sub paths"),
            OpenApiParameter("limit", OpenApiTypes.INT, description="1-1000, default 1000"),
            OpenApiParameter("offset", OpenApiTypes.INT),
            SESSION_HEADER,
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
            400: _ERROR,
            401: _ERROR,
        },
        tags=["imgbed"],
    )
    def get(self, request, path: str):
        authenticate(request)
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
    OpenApiParameter("path", OpenApiTypes.STR, OpenApiParameter.PATH),
    OpenApiParameter("filename", OpenApiTypes.STR, OpenApiParameter.PATH, description="ends in .jpg, .jpeg, .png, .gif or .webp"),
    OpenApiParameter("SessionId", OpenApiTypes.STR, description="only when IMGBED_PUBLIC_READ is false"),
    OpenApiParameter("If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER),
    OpenApiParameter("If-Modified-Since", OpenApiTypes.STR, OpenApiParameter.HEADER),
]
_IMAGE_RESPONSES = {
    **{(200, content_type): OpenApiTypes.BINARY for content_type in ("image/jpeg", "image/png", "image/gif", "image/webp")},
    304: OpenApiResponse(description="not modified"),
    400: _ERROR,
    401: _ERROR,
    404: _ERROR,
}


class ImageServeApi(APIView):
    """GET <IMGBED_URL_PREFIX><path>/<filename>: the image's bytes, streamed from the object store."""

    error_family = IMGBED_ERRORS

    @extend_schema(operation_id="imgbed_image_get", summary="Fetch an image", parameters=_IMAGE_PARAMETERS,
                   responses=_IMAGE_RESPONSES, tags=["imgbed"])
    def get(self, request, path: str, filename: str):
        _check_read_access(request)
        return _image_response(request, image_get(path=path, filename=filename), head=False)

    @extend_schema(operation_id="imgbed_image_head", summary="An image's headers", parameters=_IMAGE_PARAMETERS,
                   responses=_IMAGE_RESPONSES, tags=["imgbed"])
    def head(self, request, path: str, filename: str):
        _check_read_access(request)
        return _image_response(request, image_get(path=path, filename=filename), head=True)
