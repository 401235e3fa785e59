"""export-to-s3dir (docs/api.md §1): thin views, one service call each."""

import re

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
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
from resourced.errors import RESOURCE_ERRORS, ErrorFamily, NotFound
from resourced.sessions import authenticate

EXPORT_ERRORS = ErrorFamily(RESOURCE_ERRORS.code_key, RESOURCE_ERRORS.message_key, RESOURCE_ERRORS.codes,
                            base=empty_response)
SAFE_NAME = re.compile(r"^[^\x00-\x1f\x7f/\\]+$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
REGION_NAME = re.compile(r"^[a-z0-9\-]{0,32}$")


def validate_key(value: str, *, field: str) -> str:
    if value.startswith("/") or "\\" in value or re.search(r"[\x00-\x1f\x7f]", value):
        raise serializers.ValidationError("must be a relative key without backslashes or control characters")
    if any(part in ("..", ".", "") for part in value.split("/")):
        raise serializers.ValidationError("must not contain empty, '.' or '..' path elements")
    return value


class ExportInputSerializer(serializers.Serializer):
    ServiceCaller = serializers.ChoiceField(choices=["mma", "search"])
    StartPos = serializers.IntegerField(min_value=0, max_value=2**53)
    StartTime = serializers.CharField(max_length=32)
    Duration = serializers.IntegerField(min_value=1)
    LivePath = serializers.CharField(max_length=1024)
    PeerId = serializers.CharField(max_length=128, required=False, allow_blank=True)
    FileName = serializers.CharField(max_length=200, required=False, allow_blank=True)
    SessionId = serializers.CharField(max_length=256, required=False, allow_blank=True)
    export_type = serializers.ChoiceField(choices=[0, 1, 2], required=False, default=0)
    storage_info = serializers.CharField(max_length=65536, required=False, allow_blank=True)
    userid = serializers.CharField(max_length=255, required=False, allow_blank=True)
    ExportS3Region = serializers.CharField(max_length=32, required=False, allow_blank=True)
    ExportS3Bucket = serializers.CharField(max_length=63, required=False, allow_blank=True)
    ExportS3Key = serializers.CharField(max_length=512, required=False, allow_blank=True, trim_whitespace=False)
    ExportFormat = serializers.ChoiceField(choices=["ts", "mp4"], required=False)

    def validate_StartTime(self, value):
        try:
            parse_start_time(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value

    def validate_Duration(self, value):
        if value > settings.EXPORT_MAX_DURATION_MS:
            raise serializers.ValidationError(f"must be at most {settings.EXPORT_MAX_DURATION_MS} ms")
        return value

    def validate_LivePath(self, value):
        validate_key(value, field="LivePath")
        if not (value.endswith(".mpd") or value.endswith(".m3u8")):
            raise serializers.ValidationError("must be a DASH manifest (.mpd) or an HLS playlist (.m3u8)")
        return value

    def validate_PeerId(self, value):
        if value and not SAFE_NAME.match(value):
            raise serializers.ValidationError("must not contain '/', '\\' or control characters")
        return value

    def validate_FileName(self, value):
        if value and (not SAFE_NAME.match(value) or value in (".", "..")):
            raise serializers.ValidationError("must be a plain file name: no '/', '\\', control characters or '..'")
        return value

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
        parts = [p for p in attrs["LivePath"].split("/") if p]
        if not attrs.get("PeerId") and len(parts) < 3:
            raise serializers.ValidationError(
                {"PeerId": "required when LivePath has no peer element (<purpose>/<peer>/<recording>/…)"}
            )
        file_name = attrs.get("FileName", "")
        if file_name and "ExportFormat" in attrs:
            suffix = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
            if suffix in ("ts", "mp4") and suffix != attrs["ExportFormat"]:
                raise serializers.ValidationError({"FileName": f"extension .{suffix} contradicts ExportFormat"})
        return attrs


ExportOutputSerializer = inline_serializer(
    name="ExportResponse",
    fields={
        "ErrorCode": serializers.IntegerField(),
        "ErrorMessage": serializers.CharField(),
        "TimeWait": serializers.IntegerField(),
        "ImagePath": serializers.CharField(),
        "VideoPath": serializers.CharField(),
        "Version": serializers.CharField(),
        "S3Dir": serializers.CharField(),
        "LackLength": serializers.IntegerField(),
        "TaskId": serializers.CharField(),
        "Progress": serializers.IntegerField(),
        "Stage": serializers.CharField(),
    },
)
EXPORT_RESPONSES = {
    200: ExportOutputSerializer,
    400: OpenApiResponse(ExportOutputSerializer, description="invalid request (ErrorCode -2)"),
    401: OpenApiResponse(ExportOutputSerializer, description="authentication failed (ErrorCode -3)"),
    429: OpenApiResponse(ExportOutputSerializer, description="over quota or saturated (ErrorCode -4)"),
}


class ExportCreateApi(APIView):
    error_family = EXPORT_ERRORS

    @extend_schema(
        operation_id="export_to_s3dir",
        request=ExportInputSerializer,
        responses=EXPORT_RESPONSES,
        description="Export a clip of a recording to S3. Post the same request again after TimeWait ms to poll.",
    )
    def post(self, request):
        session_userid = authenticate(request)
        serializer = ExportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        export_request = export_request_build(data=serializer.validated_data, session_userid=session_userid)
        export, _created = export_submit(request=export_request)
        return Response(export_response(export))


class ExportDetailApi(APIView):
    error_family = EXPORT_ERRORS

    def _export(self, request, task_id: str, *, for_response: bool = False):
        authenticate(request)
        export = export_get(task_id=task_id, for_response=for_response)
        if export is None:
            raise NotFound(f"TaskId: no export {task_id}")
        return export

    @extend_schema(operation_id="export_get", responses=EXPORT_RESPONSES | {404: ExportOutputSerializer})
    def get(self, request, task_id: str):
        return Response(export_response(self._export(request, task_id, for_response=True)))

    @extend_schema(operation_id="export_cancel", responses=EXPORT_RESPONSES | {404: ExportOutputSerializer})
    def delete(self, request, task_id: str):
        return Response(export_response(export_cancel(export=self._export(request, task_id))))


class ThumbnailInputSerializer(serializers.Serializer):
    StartPos = serializers.IntegerField(min_value=0, max_value=2**53)
    StartTime = serializers.CharField(max_length=32)
    LivePath = serializers.CharField(max_length=1024)
    PeerId = serializers.CharField(max_length=128, required=False, allow_blank=True)
    SessionId = serializers.CharField(max_length=256, required=False, allow_blank=True)
    storage_info = serializers.CharField(max_length=65536, required=False, allow_blank=True)

    validate_StartTime = ExportInputSerializer.validate_StartTime
    validate_LivePath = ExportInputSerializer.validate_LivePath
    validate_PeerId = ExportInputSerializer.validate_PeerId

    def validate(self, attrs):
        if not attrs.get("PeerId") and len([p for p in attrs["LivePath"].split("/") if p]) < 3:
            raise serializers.ValidationError({"PeerId": "required when LivePath has no peer element"})
        return attrs


THUMBNAIL_ERRORS = ErrorFamily("ErrorCode", "ErrorMessage", RESOURCE_ERRORS.codes,
                               base=lambda: {"TimeWait": 0, "ImagePath": ""})


class ThumbnailApi(APIView):
    error_family = THUMBNAIL_ERRORS

    @extend_schema(
        operation_id="getthumbnail",
        request=ThumbnailInputSerializer,
        responses={200: inline_serializer(name="ThumbnailResponse", fields={
            "ErrorCode": serializers.IntegerField(), "ErrorMessage": serializers.CharField(),
            "ImagePath": serializers.CharField(), "TimeWait": serializers.IntegerField()})},
        description="Store the frame at a position of a recording in the image bed. ErrorCode 1: being made, "
                    "post again after TimeWait ms; 0: ImagePath is ready.",
    )
    def post(self, request):
        session_userid = authenticate(request)
        serializer = ThumbnailInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        thumb = thumbnail_request(data=serializer.validated_data, session_userid=session_userid)
        return Response(thumbnail_response(thumb))
