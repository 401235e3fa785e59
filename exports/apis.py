"""export-to-s3dir (docs/api.md §1): thin views, one service call each."""

import base64
import json
import re

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    extend_schema_view,
)
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from exports.selectors import empty_response, export_get, export_response, thumbnail_response
from exports.services import (
    export_cancel,
    export_request_build,
    export_submit,
    parse_start_time,
    thumbnail_request,
)
from resourced.archive import RESTORE_TIERS
from resourced.callbacks.http import url_problem
from resourced.errors import RESOURCE_ERRORS, ErrorFamily, NotFound
from resourced.names import name_problem
from resourced.s3 import relative_key_problem
from resourced.schema import error_response
from resourced.sessions import SESSION_REQUIRED
from resourced.throttling import SessionSubmitThrottle

EXPORT_ERRORS = ErrorFamily(RESOURCE_ERRORS.code_key, RESOURCE_ERRORS.message_key, RESOURCE_ERRORS.codes,
                            base=empty_response)
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
REGION_NAME = re.compile(r"^[a-z0-9\-]{0,32}$")

# --- the seeds' request (000_a09ab8c615f03a96.txt), the examples of the schema -------------------

SEED_STORAGE_INFO = base64.b64encode(json.dumps([
    {"storage_purpose": purpose, "storage_type": "S3", "storage_enable": True, "storage_name": "mma-video-archive",
     "storage_location": "us-west-1", "storage_description": "", "storage_root_folder": ""}
    for purpose in ("ts", "mp4")
]).encode()).decode()
SEED_POSITION = {
    "StartPos": 1562253612833,
    "StartTime": "00:13:12",
    "PeerId": "4D7446C8141EE167",
    "LivePath": "mp4/55524C2004E/55524C2041268-6bdb82b53e0a/1/stream.mpd",
}
SEED_SESSION = {"SessionId": "2A39603DDB0F47CFB32E96C8366084AE", "storage_info": SEED_STORAGE_INFO}
SEED_EXPORT = {"ServiceCaller": "mma", **SEED_POSITION, "Duration": 9000}
SEED_EXPORT_FULL = {
    "_ServiceName": "resourceservice", "_UrlPath": "export-to-s3dir", "_Version": 1,
    **SEED_EXPORT, "FileName": "04-60C262253621833_0.0993375889", **SEED_SESSION, "export_type": 1,
    "userid": "dev@tvunetworks.com", "ExportS3Region": "us-west-1", "ExportS3Bucket": "export",
    "ExportS3Key": "AKIAKMEWDHAJQH4YLNFN:SQwJeOobv82932fksfel+/6V7uiRVgudrJF4oTH",
}
EXPORT_EXAMPLES = [
    OpenApiExample(
        "required", summary="The required fields (the seeds' values)", value=SEED_EXPORT, request_only=True,
        description="The session comes from Authorize (the X-Session-Id header); the service's own source "
                    "storage and destination bucket are used.",
    ),
    OpenApiExample(
        "seeds", summary="The seeds' full request", request_only=True,
        value={**SEED_EXPORT_FULL, "ExportFormat": "ts", "CutMode": "accurate", "RestoreTier": "Standard",
               "CallbackUrl": "https://client.example/export-callback"},
        description="The request of the seeds, field for field (storage_info is the base64 of their storage list), "
                    "and this service's own optional fields. Unknown fields such as _ServiceName are ignored.",
    ),
]


def _plain_name(value: str) -> str:
    """PeerId and FileName become elements of object keys: the image bed's name rules."""
    problem = name_problem(value) if value else None
    if problem:
        raise serializers.ValidationError(f"must be a plain name: {problem}")
    return value


class RecordingPositionSerializer(serializers.Serializer):
    """The fields that name a position in a recording, shared by export-to-s3dir and getthumbnail."""

    StartPos = serializers.IntegerField(
        min_value=0, max_value=2**53,
        help_text="Absolute position in the recording, epoch milliseconds (from the Search API). Used when the "
                  "manifest has a wall-clock origin (DASH availabilityStartTime, HLS PROGRAM-DATE-TIME).")
    StartTime = serializers.CharField(
        max_length=32,
        help_text="The position relative to the recording's start: HH:MM:SS, HH:MM:SS.mmm, MM:SS, or milliseconds "
                  "as a string. Used when the manifest has no wall-clock origin.")
    LivePath = serializers.CharField(
        max_length=1024,
        help_text="Key of the recording's manifest in the source storage (from the Search API): "
                  "mp4/<peer>/<recording>/…/stream.mpd (DASH) or ts/<peer>/<recording>/…/index.m3u8 (HLS).")
    PeerId = serializers.CharField(
        max_length=128, required=False, allow_blank=True,
        help_text="The source device; when absent, the second element of LivePath. A plain name (no '/', '\\', "
                  "control characters, not '.' or '..').")
    SessionId = serializers.CharField(
        max_length=256, required=False, allow_blank=True,
        help_text="The session, when it is not sent in the X-Session-Id header (Authorize); the header is used "
                  "when both are sent.")
    storage_info = serializers.CharField(
        max_length=65536, required=False, allow_blank=True,
        help_text="Base64 of a JSON list of storages (see the seeds): the enabled S3 entry whose storage_purpose is "
                  "the first element of LivePath names the source bucket (storage_name), region "
                  "(storage_location) and key prefix (storage_root_folder). When absent, the service's own "
                  "source storage.")

    def validate_StartTime(self, value):
        try:
            parse_start_time(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value

    def validate_LivePath(self, value):
        problem = relative_key_problem(value)
        if problem:
            raise serializers.ValidationError(f"must be a relative key: {problem}")
        if not (value.endswith(".mpd") or value.endswith(".m3u8")):
            raise serializers.ValidationError("must be a DASH manifest (.mpd) or an HLS playlist (.m3u8)")
        return value

    def validate_PeerId(self, value):
        return _plain_name(value)

    def validate(self, attrs):
        if not attrs.get("PeerId") and len([p for p in attrs["LivePath"].split("/") if p]) < 3:
            raise serializers.ValidationError(
                {"PeerId": "required when LivePath has no peer element (<purpose>/<peer>/<recording>/…)"}
            )
        return attrs


@extend_schema_serializer(component_name="ExportResponse")
class ExportOutputSerializer(serializers.Serializer):
    """The answer of every export-to-s3dir request (docs/api.md §1 Response)."""

    ErrorCode = serializers.IntegerField()
    ErrorMessage = serializers.CharField()
    TimeWait = serializers.IntegerField()
    ImagePath = serializers.CharField()
    VideoPath = serializers.CharField()
    Version = serializers.CharField()
    S3Dir = serializers.CharField()
    LackLength = serializers.IntegerField()
    TaskId = serializers.CharField()
    Progress = serializers.IntegerField()
    Stage = serializers.CharField()
    ClipStart = serializers.IntegerField()
    ClipDuration = serializers.IntegerField()


EXPORT_401 = error_response(ExportOutputSerializer, EXPORT_ERRORS, "auth", "authentication failed (ErrorCode -3)",
                            SESSION_REQUIRED, "SessionId: unknown or expired")
EXPORT_404 = error_response(ExportOutputSerializer, EXPORT_ERRORS, "not_found",
                            "no such export, or another user's (ErrorCode -1)",
                            "TaskId: no such export 0123456789abcdef0123456789abcdef")
EXPORT_RESPONSES = {
    200: OpenApiResponse(ExportOutputSerializer, description="the export's state: ErrorCode 1 processing (poll "
                         "again after TimeWait ms), 5 ready, negative: failed (docs/api.md §1)"),
    400: error_response(ExportOutputSerializer, EXPORT_ERRORS, "invalid", "invalid request (ErrorCode -2)",
                        "Duration: must be at most 7200000 ms",
                        "body: not valid JSON or form data (JSON parse error - Expecting value: line 1 column 1 (char 0))"),
    401: EXPORT_401,
    413: error_response(ExportOutputSerializer, EXPORT_ERRORS, "invalid",
                        "body over API_MAX_JSON_BYTES, refused unread (ErrorCode -2)",
                        "body: 2000000 bytes, over the limit of 1048576"),
    429: error_response(ExportOutputSerializer, EXPORT_ERRORS, "quota",
                        "over quota, too many posts from this session or the service saturated (ErrorCode -4): "
                        "try again after TimeWait ms",
                        "too many requests from this session; try again in 30000 ms", extra={"TimeWait": 30000}),
}


class ExportCreateApi(APIView):
    error_family = EXPORT_ERRORS
    throttle_classes = [SessionSubmitThrottle]

    @extend_schema_serializer(component_name="ExportRequest")
    class InputSerializer(RecordingPositionSerializer):
        """The request of export-to-s3dir: the seeds' fields, and this service's own (ours)."""

        ServiceCaller = serializers.ChoiceField(choices=["mma", "search"], help_text="The calling service.")
        Duration = serializers.IntegerField(
            min_value=1, help_text="Length of the clip in milliseconds, at most EXPORT_MAX_DURATION_MS (default 2 h).")
        FileName = serializers.CharField(
            max_length=200, required=False, allow_blank=True,
            help_text="Base name of the clip; .ts or .mp4 is added when it has neither; generated when absent. "
                      "A plain name, like PeerId.")
        export_type = serializers.ChoiceField(
            choices=[(0, "keep the source's codec (stream copy)"), (1, "H.264"), (2, "H.265")], required=False,
            default=0, help_text="The clip's video codec.")
        userid = serializers.CharField(
            max_length=255, required=False, allow_blank=True,
            help_text="The user the export runs for (quotas are counted per userid); the session's user when absent.")
        ExportS3Region = serializers.CharField(
            max_length=32, required=False, allow_blank=True,
            help_text="Region of the destination bucket, such as us-west-1.")
        ExportS3Bucket = serializers.CharField(
            max_length=63, required=False, allow_blank=True,
            help_text="The destination bucket (an S3 bucket name); EXPORT_DEFAULT_BUCKET when absent. The clip is "
                      "stored at <S3Dir>/<PeerId>/<file name>.")
        ExportS3Key = serializers.CharField(
            max_length=512, required=False, allow_blank=True, trim_whitespace=False,
            help_text="Credentials of the destination, ACCESS_KEY_ID:SECRET_ACCESS_KEY; the service's own when "
                      "absent. Stored encrypted and erased when the export ends.")
        ExportFormat = serializers.ChoiceField(
            choices=["ts", "mp4"], required=False,
            help_text="(ours) The clip's container: ts (default) or mp4; a FileName ending in .mp4 implies mp4.")
        CutMode = serializers.ChoiceField(
            choices=["accurate", "keyframe"], required=False, default="accurate",
            help_text="(ours) accurate: the clip starts on the requested frame and ends on the last frame before "
                      "start + Duration; keyframe: a pure stream copy from the keyframe at or before the start.")
        CallbackUrl = serializers.CharField(
            max_length=2048, required=False, allow_blank=True,
            help_text="receives the poll body, signed, when the export is ready, failed or cancelled")
        RestoreTier = serializers.ChoiceField(
            choices=list(RESTORE_TIERS), required=False,
            help_text="the S3 restore tier for archived segments of the recording (default EXPORT_RESTORE_TIER)")

        def get_fields(self):
            fields = super().get_fields()
            fields["Duration"].max_value = settings.EXPORT_MAX_DURATION_MS  # for the schema: validate_Duration checks it
            return fields

        def validate_Duration(self, value):
            if value > settings.EXPORT_MAX_DURATION_MS:
                raise serializers.ValidationError(f"must be at most {settings.EXPORT_MAX_DURATION_MS} ms")
            return value

        def validate_CallbackUrl(self, value):
            problem = url_problem(value) if value else None
            if problem:
                raise serializers.ValidationError(problem)
            return value

        def validate_FileName(self, value):
            return _plain_name(value)

        def validate_ExportS3Bucket(self, value):
            if value and not BUCKET_NAME.match(value):
                raise serializers.ValidationError("must be an S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
            return value

        def validate_ExportS3Region(self, value):
            if value and not REGION_NAME.match(value):
                raise serializers.ValidationError("must be a region name such as us-west-1")
            return value

        def validate_ExportS3Key(self, value):
            access, sep, secret = value.partition(":")
            if value and (not sep or not access.strip() or not secret.strip()):
                raise serializers.ValidationError("must be ACCESS_KEY_ID:SECRET_ACCESS_KEY")
            return value

        def validate(self, attrs):
            attrs = super().validate(attrs)
            file_name = attrs.get("FileName", "")
            if file_name and "ExportFormat" in attrs:
                suffix = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
                if suffix in ("ts", "mp4") and suffix != attrs["ExportFormat"]:
                    raise serializers.ValidationError({"FileName": f"extension .{suffix} contradicts ExportFormat"})
            return attrs

    @extend_schema(
        operation_id="export_to_s3dir",
        summary="Export a clip of a recording to S3",
        request=InputSerializer,
        responses=EXPORT_RESPONSES,
        examples=EXPORT_EXAMPLES,
        description="Export a clip of a recording to S3. Post the same request again after TimeWait ms to poll.",
        tags=["exports"],
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        export_request = export_request_build(data=serializer.validated_data, session_userid=request.user.userid)
        export, _created = export_submit(request=export_request)
        return Response(export_response(export))


@extend_schema_view(
    post=extend_schema(
        operation_id="export_to_s3dir_at_root",
        summary="Export a clip of a recording to S3 (the seeds' path)",
        description="The same operation as export_to_s3dir, at the path of the user's document.",
    )
)
class ExportCreateAtRootApi(ExportCreateApi):
    """export-to-s3dir at POST /export-to-s3dir, the path in the seeds."""


TASK_ID_PARAMETER = OpenApiParameter(
    "task_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The TaskId of an export-to-s3dir answer.",
    examples=[OpenApiExample("task", summary="A TaskId", value="9f0c4e6a1b2d4c8e8f7a6b5c4d3e2f10")],
)
EXPORT_DETAIL_RESPONSES = {200: EXPORT_RESPONSES[200], 401: EXPORT_401, 404: EXPORT_404}


class ExportDetailApi(APIView):
    error_family = EXPORT_ERRORS

    def _export(self, request, task_id: str, *, for_response: bool = False):
        export = export_get(task_id=task_id, owner=request.user.userid, for_response=for_response)
        if export is None:
            raise NotFound(f"TaskId: no such export {task_id}")
        return export

    @extend_schema(operation_id="export_get", summary="An export's state, without re-posting",
                   parameters=[TASK_ID_PARAMETER], responses=EXPORT_DETAIL_RESPONSES, tags=["exports"])
    def get(self, request, task_id: str):
        return Response(export_response(self._export(request, task_id, for_response=True)))

    @extend_schema(operation_id="export_cancel", summary="Cancel a queued or running export",
                   parameters=[TASK_ID_PARAMETER], responses=EXPORT_DETAIL_RESPONSES, tags=["exports"])
    def delete(self, request, task_id: str):
        return Response(export_response(export_cancel(export=self._export(request, task_id))))


THUMBNAIL_ERRORS = ErrorFamily("ErrorCode", "ErrorMessage", RESOURCE_ERRORS.codes,
                               base=lambda: {"TimeWait": 0, "ImagePath": ""})


class ThumbnailApi(APIView):
    error_family = THUMBNAIL_ERRORS

    @extend_schema_serializer(component_name="ThumbnailRequest")
    class InputSerializer(RecordingPositionSerializer):
        """The position of the frame: the fields and rules of every recording position."""

    @extend_schema_serializer(component_name="ThumbnailResponse")
    class OutputSerializer(serializers.Serializer):
        ErrorCode = serializers.IntegerField()
        ErrorMessage = serializers.CharField()
        ImagePath = serializers.CharField()
        TimeWait = serializers.IntegerField()

    @extend_schema(
        operation_id="getthumbnail",
        summary="Store the frame at a position of a recording in the image bed",
        request=InputSerializer,
        responses={
            200: OpenApiResponse(OutputSerializer, description="ErrorCode 1: being made, post again after TimeWait "
                                 "ms; 0: ImagePath is ready; -1 no media at that position, -5 source "
                                 "unreachable, -7 undecodable"),
            400: error_response(OutputSerializer, THUMBNAIL_ERRORS, "invalid", "invalid request (ErrorCode -2)",
                                "LivePath: must be a DASH manifest (.mpd) or an HLS playlist (.m3u8)"),
            401: error_response(OutputSerializer, THUMBNAIL_ERRORS, "auth", "authentication failed (ErrorCode -3)",
                                SESSION_REQUIRED, "SessionId: unknown or expired"),
            413: error_response(OutputSerializer, THUMBNAIL_ERRORS, "invalid",
                                "body over API_MAX_JSON_BYTES, refused unread (ErrorCode -2)",
                                "body: 2000000 bytes, over the limit of 1048576"),
        },
        examples=[
            OpenApiExample("required", summary="The seeds' recording", value=SEED_POSITION, request_only=True,
                           description="The session comes from Authorize (the X-Session-Id header)."),
            OpenApiExample("seeds", summary="With the seeds' storage and session in the body",
                           value={**SEED_POSITION, **SEED_SESSION}, request_only=True),
        ],
        description="Store the frame at a position of a recording in the image bed. ErrorCode 1: being made, "
                    "post again after TimeWait ms; 0: ImagePath is ready.",
        tags=["exports"],
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        thumb = thumbnail_request(data=serializer.validated_data, session_userid=request.user.userid)
        return Response(thumbnail_response(thumb))
