"""export-to-s3dir (docs/api.md §1): thin views, one service call each."""

import re

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
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
from resourced.errors import RESOURCE_ERRORS, ErrorFamily, NotFound
from resourced.names import name_problem
from resourced.s3 import relative_key_problem
from resourced.sessions import authenticate
from resourced.throttling import SessionSubmitThrottle

EXPORT_ERRORS = ErrorFamily(RESOURCE_ERRORS.code_key, RESOURCE_ERRORS.message_key, RESOURCE_ERRORS.codes,
                            base=empty_response)
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
REGION_NAME = re.compile(r"^[a-z0-9\-]{0,32}$")


def _plain_name(value: str) -> str:
    """PeerId and FileName become elements of object keys: the image bed's name rules."""
    problem = name_problem(value) if value else None
    if problem:
        raise serializers.ValidationError(f"must be a plain name: {problem}")
    return value


class RecordingPositionSerializer(serializers.Serializer):
    """The fields that name a position in a recording, shared by export-to-s3dir and getthumbnail."""

    StartPos = serializers.IntegerField(min_value=0, max_value=2**53)
    StartTime = serializers.CharField(max_length=32)
    LivePath = serializers.CharField(max_length=1024)
    PeerId = serializers.CharField(max_length=128, required=False, allow_blank=True)
    SessionId = serializers.CharField(max_length=256, required=False, allow_blank=True)
    storage_info = serializers.CharField(max_length=65536, required=False, allow_blank=True)

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


EXPORT_RESPONSES = {
    200: ExportOutputSerializer,
    400: OpenApiResponse(ExportOutputSerializer, description="invalid request (ErrorCode -2)"),
    401: OpenApiResponse(ExportOutputSerializer, description="authentication failed (ErrorCode -3)"),
    429: OpenApiResponse(ExportOutputSerializer, description="over quota or saturated (ErrorCode -4)"),
}


class ExportCreateApi(APIView):
    error_family = EXPORT_ERRORS
    throttle_classes = [SessionSubmitThrottle]

    @extend_schema_serializer(component_name="ExportRequest")
    class InputSerializer(RecordingPositionSerializer):
        ServiceCaller = serializers.ChoiceField(choices=["mma", "search"])
        Duration = serializers.IntegerField(min_value=1)
        FileName = serializers.CharField(max_length=200, required=False, allow_blank=True)
        export_type = serializers.ChoiceField(choices=[0, 1, 2], required=False, default=0)
        userid = serializers.CharField(max_length=255, required=False, allow_blank=True)
        ExportS3Region = serializers.CharField(max_length=32, required=False, allow_blank=True)
        ExportS3Bucket = serializers.CharField(max_length=63, required=False, allow_blank=True)
        ExportS3Key = serializers.CharField(max_length=512, required=False, allow_blank=True, trim_whitespace=False)
        ExportFormat = serializers.ChoiceField(choices=["ts", "mp4"], required=False)
        CutMode = serializers.ChoiceField(choices=["accurate", "keyframe"], required=False, default="accurate")
        RestoreTier = serializers.ChoiceField(
            choices=list(RESTORE_TIERS), required=False,
            help_text="the S3 restore tier for archived segments of the recording (default EXPORT_RESTORE_TIER)")

        def validate_Duration(self, value):
            if value > settings.EXPORT_MAX_DURATION_MS:
                raise serializers.ValidationError(f"must be at most {settings.EXPORT_MAX_DURATION_MS} ms")
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
        request=InputSerializer,
        responses=EXPORT_RESPONSES,
        description="Export a clip of a recording to S3. Post the same request again after TimeWait ms to poll.",
    )
    def post(self, request):
        session_userid = authenticate(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        export_request = export_request_build(data=serializer.validated_data, session_userid=session_userid)
        export, _created = export_submit(request=export_request)
        return Response(export_response(export))


class ExportDetailApi(APIView):
    error_family = EXPORT_ERRORS

    def _export(self, request, task_id: str, *, for_response: bool = False):
        export = export_get(task_id=task_id, owner=authenticate(request), for_response=for_response)
        if export is None:
            raise NotFound(f"TaskId: no such export {task_id}")
        return export

    @extend_schema(operation_id="export_get", responses=EXPORT_RESPONSES | {404: ExportOutputSerializer})
    def get(self, request, task_id: str):
        return Response(export_response(self._export(request, task_id, for_response=True)))

    @extend_schema(operation_id="export_cancel", responses=EXPORT_RESPONSES | {404: ExportOutputSerializer})
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
        request=InputSerializer,
        responses={200: OutputSerializer},
        description="Store the frame at a position of a recording in the image bed. ErrorCode 1: being made, "
                    "post again after TimeWait ms; 0: ImagePath is ready.",
    )
    def post(self, request):
        session_userid = authenticate(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        thumb = thumbnail_request(data=serializer.validated_data, session_userid=session_userid)
        return Response(thumbnail_response(thumb))
