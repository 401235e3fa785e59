"""Restore endpoints (docs/api.md §3); errors are ``{"code": <nonzero>, "message": "<field>: <rule>"}``."""

import re
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from resourced.errors import ErrorFamily
from resourced.s3 import relative_key_problem
from resourced.sessions import authenticate
from restore import callbacks as http_callbacks
from restore.selectors import restore_job_answer, restore_job_get
from restore.services import callback_receive, restore_job_create

RESTORE_ERRORS = ErrorFamily(
    "code", "message", {"invalid": 400, "auth": 401, "not_found": 404, "quota": 429, "conflict": 409, "internal": 500}
)
TIERS = ("Standard", "Bulk", "Expedited")
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_url_validator = URLValidator(schemes=["http", "https"])


@extend_schema_serializer(component_name="RestoreFileStatus")
class FileStatusSerializer(serializers.Serializer):
    file_name = serializers.CharField()
    file_code = serializers.IntegerField(allow_null=True, help_text="0 success, 1 not found, 2 restore failed, 3 copy failed, 4 restore timed out; null while not finished")
    status = serializers.CharField()
    key = serializers.CharField()


class RestoreCreateApi(APIView):
    error_family = RESTORE_ERRORS

    @extend_schema_serializer(component_name="RestoreRequest")
    class InputSerializer(serializers.Serializer):
        task_id = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        storage_info = serializers.CharField(required=False, allow_blank=True)
        files = serializers.JSONField()
        file_dir = serializers.CharField(trim_whitespace=False)
        callback_url = serializers.CharField()
        days = serializers.IntegerField(required=False)
        tier = serializers.CharField(required=False)

        def validate_task_id(self, value: str) -> str:
            if value and not TASK_ID.match(value):
                raise serializers.ValidationError("1 to 64 of letters, digits, '.', '_', ':' and '-', starting with a letter or digit")
            return value

        def validate_files(self, value) -> list[str]:
            if not isinstance(value, list) or not value:
                raise serializers.ValidationError("must be a non-empty list of object keys")
            if len(value) > settings.RESTORE_MAX_FILES:
                raise serializers.ValidationError(f"at most {settings.RESTORE_MAX_FILES} files")
            names = {}
            for index, key in enumerate(value):
                if not isinstance(key, str):
                    raise serializers.ValidationError(f"item {index} is not a string")
                problem = relative_key_problem(key)
                if problem:
                    raise serializers.ValidationError(f"item {index} ({key[:100]!r}) {problem}")
                name = key.rsplit("/", 1)[-1]
                if name in names:
                    raise serializers.ValidationError(
                        f"items {names[name]} and {index} have the same file name {name!r}; they would be copied to the same key"
                    )
                names[name] = index
            return value

        def validate_file_dir(self, value: str) -> str:
            value = value.rstrip("/")
            problem = relative_key_problem(value)
            if problem:
                raise serializers.ValidationError(problem)
            return value

        def validate_callback_url(self, value: str) -> str:
            if len(value) > 2048:
                raise serializers.ValidationError("at most 2048 characters")
            try:
                _url_validator(value)
            except DjangoValidationError:
                raise serializers.ValidationError("must be an http:// or https:// URL") from None
            return value

        def validate_days(self, value: int) -> int:
            if not 1 <= value <= settings.RESTORE_MAX_DAYS:
                raise serializers.ValidationError(f"must be from 1 to {settings.RESTORE_MAX_DAYS}")
            return value

        def validate_tier(self, value: str) -> str:
            for tier in TIERS:
                if value.lower() == tier.lower():
                    return tier
            raise serializers.ValidationError(f"must be one of {', '.join(TIERS)}")

    @extend_schema_serializer(component_name="RestoreAnswer")
    class OutputSerializer(serializers.Serializer):
        code = serializers.IntegerField()
        message = serializers.CharField()
        task_id = serializers.CharField()
        status = serializers.CharField(help_text="queued, restoring, copying, done")
        result_code = serializers.IntegerField(allow_null=True, help_text="the type 1 callback's code once done")
        file_dir = serializers.CharField()
        file_list_status = serializers.ListField(child=FileStatusSerializer())
        callbacks = serializers.ListField(child=serializers.DictField())

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer}, summary="Restore archived files and copy them into file_dir")
    def post(self, request):
        userid = authenticate(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job, created = restore_job_create(
            userid=userid,
            task_id=data.get("task_id") or uuid.uuid4().hex,
            files=data["files"],
            file_dir=data["file_dir"],
            callback_url=data["callback_url"],
            days=data.get("days") or settings.RESTORE_DEFAULT_DAYS,
            tier=data.get("tier") or settings.RESTORE_DEFAULT_TIER,
            storage_info=data.get("storage_info") or "",
        )
        return Response(restore_job_answer(job=job, message="accepted" if created else "already accepted"))


class RestoreDetailApi(APIView):
    error_family = RESTORE_ERRORS

    @extend_schema(
        responses={200: RestoreCreateApi.OutputSerializer},
        parameters=[OpenApiParameter("X-Session-Id", str, OpenApiParameter.HEADER, required=True)],
        summary="State of a restore job",
    )
    def get(self, request, task_id: str):
        userid = authenticate(request)
        job = restore_job_get(userid=userid, task_id=task_id)
        return Response(restore_job_answer(job=job))


class PutRestoreResultApi(APIView):
    """The reference receiver of the PutRestoreResult callback: signature only, no session."""

    error_family = RESTORE_ERRORS

    @extend_schema_serializer(component_name="PutRestoreResultAnswer")
    class OutputSerializer(serializers.Serializer):
        code = serializers.IntegerField()
        message = serializers.CharField()

    @extend_schema(
        request={"application/json": dict},
        responses={200: OutputSerializer, 401: OutputSerializer},
        parameters=[
            OpenApiParameter(http_callbacks.SIGNATURE_HEADER, str, OpenApiParameter.HEADER, required=True,
                             description="t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<delivery id>.<body>'>"),
            OpenApiParameter(http_callbacks.DELIVERY_HEADER, str, OpenApiParameter.HEADER, required=True,
                             description="the delivery id, the same on every retry; signed with the body"),
        ],
        summary="Reference receiver of the signed restore callback",
    )
    def post(self, request):
        callback_receive(
            body=request.body,
            signature=request.headers.get(http_callbacks.SIGNATURE_HEADER),
            delivery_id=request.headers.get(http_callbacks.DELIVERY_HEADER),
        )
        return Response({"code": 0, "message": "success"})
