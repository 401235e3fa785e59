"""Restore endpoints (docs/api.md §3); errors are ``{"code": <nonzero>, "message": "<field>: <rule>"}``."""

import base64
import json
import re
import uuid

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from resourced.callbacks import http as http_callbacks
from resourced.errors import ErrorFamily
from resourced.s3 import relative_key_problem
from resourced.schema import error_response
from resourced.sessions import SESSION_REQUIRED
from restore.selectors import restore_job_answer, restore_job_get
from restore.services import callback_receive, restore_job_create

RESTORE_ERRORS = ErrorFamily(
    "code", "message",
    {"invalid": 400, "too_large": 413, "auth": 401, "not_found": 404, "quota": 429, "conflict": 409, "internal": 500}
)
TIERS = ("Standard", "Bulk", "Expedited")
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

# the request of docs/api.md §3 (the storage list of the seeds' export-to-s3dir document)
EXAMPLE_REQUEST = {
    "task_id": "job-42",
    "files": ["key/of/archived/object1.ts", "key/of/object2.mp4"],
    "file_dir": "restore/2026-11-22/job-42",
    "callback_url": "https://client.example/resource/v1/i/PutRestoreResult",
    "days": 7,
    "tier": "Standard",
}
# the seeds' storage entry (export-to-s3dir's document), with the purpose restores look for
EXAMPLE_STORAGE_INFO = base64.b64encode(json.dumps([
    {"storage_purpose": "archive", "storage_type": "S3", "storage_enable": True, "storage_name": "mma-video-archive",
     "storage_location": "us-west-1", "storage_description": "", "storage_root_folder": ""}
]).encode()).decode()
# the seeds' PutRestoreResult body (001_ba03d51cc79d0ea2.txt), as docs/api.md §3 fills it in
EXAMPLE_CALLBACK = {
    "code": 0, "message": "success", "type": 1, "task_id": "job-42", "file_dir": "restore/2026-11-22/job-42",
    "file_list_status": [{"file_name": "object1.ts", "file_code": 0}, {"file_name": "object2.mp4", "file_code": 3}],
}


@extend_schema_field({"type": "array", "items": {"type": "string", "maxLength": 1024}, "minItems": 1})
class ObjectKeysField(serializers.JSONField):
    """A JSON list of object keys; RestoreCreateApi.InputSerializer.validate_files checks it (a
    ListField would refuse other JSON with other messages)."""


@extend_schema_field({"type": "string", "enum": list(TIERS)})
class TierField(serializers.CharField):
    """A restore tier; validate_tier accepts it in any case and answers the tier's own spelling."""


@extend_schema_serializer(component_name="RestoreError")
class ErrorSerializer(serializers.Serializer):
    """An answer of the restore endpoints: code 0 on success."""

    code = serializers.IntegerField()
    message = serializers.CharField()


RESTORE_401 = error_response(ErrorSerializer, RESTORE_ERRORS, "auth", "no valid session (code 401)",
                             SESSION_REQUIRED, "SessionId: unknown or expired")


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
        task_id = serializers.CharField(
            required=False, allow_blank=True, trim_whitespace=False,
            help_text="Your id of the job: 1 to 64 of letters, digits, '.', '_', ':' and '-', starting with a letter "
                      "or digit; generated when absent. A second post with the same task_id answers the same job.")
        storage_info = serializers.CharField(
            required=False, allow_blank=True,
            help_text="Base64 of a JSON list of storages, as for export-to-s3dir: the entry with storage_purpose "
                      "'archive', or the first enabled S3 entry, names the bucket. The service's own when absent.")
        files = ObjectKeysField(
            help_text="The keys of the archived objects, relative, at most RESTORE_MAX_FILES (default 1000), with "
                      "distinct file names (each is copied to <file_dir>/<its file name>).")
        file_dir = serializers.CharField(
            trim_whitespace=False,
            help_text="The key prefix the restored objects are copied under (a trailing '/' is ignored).")
        callback_url = serializers.CharField(
            help_text="http(s) URL of at most 2048 characters that receives the signed PutRestoreResult callbacks: "
                      "type 0 (a test of the network) at once, type 1 with the result.")
        days = serializers.IntegerField(
            required=False,
            help_text="How many days the restored copies stay readable in the archive bucket; RESTORE_DEFAULT_DAYS "
                      "(default 7) when absent.")
        tier = TierField(
            required=False,
            help_text="The S3 restore tier, Standard, Bulk or Expedited (in any case); RESTORE_DEFAULT_TIER "
                      "(default Standard) when absent.")

        def get_fields(self):
            fields = super().get_fields()
            # for the schema: validate_days and validate_tier check them, with their own messages
            fields["days"].min_value, fields["days"].max_value = 1, settings.RESTORE_MAX_DAYS
            return fields

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
            problem = http_callbacks.url_problem(value)
            if problem:
                raise serializers.ValidationError(problem)
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

    @extend_schema(
        operation_id="restore_create",
        summary="Restore archived files and copy them into file_dir",
        request=InputSerializer,
        examples=[
            OpenApiExample("request", summary="docs/api.md §3", value=EXAMPLE_REQUEST, request_only=True,
                           description="The session comes from Authorize (the X-Session-Id header), or a "
                                       "SessionId field in the body."),
            OpenApiExample("storage", summary="From another archive bucket (storage_info)", request_only=True,
                           value={**EXAMPLE_REQUEST, "storage_info": EXAMPLE_STORAGE_INFO}),
        ],
        responses={
            200: OpenApiResponse(OutputSerializer, description="accepted (code 0), or the job already accepted "
                                 "with this task_id"),
            400: error_response(ErrorSerializer, RESTORE_ERRORS, "invalid", "invalid request (code 400)",
                                "days: must be from 1 to 30", "tier: must be one of Standard, Bulk, Expedited"),
            401: RESTORE_401,
            413: error_response(ErrorSerializer, RESTORE_ERRORS, "too_large",
                                "body over API_MAX_JSON_BYTES, refused unread (HTTP 413, code 413)",
                                "body: 2000000 bytes, over the limit of 1048576"),
        },
        tags=["restore"],
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job, created = restore_job_create(
            userid=request.user.userid,
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
        operation_id="restore_get",
        summary="State of a restore job",
        parameters=[OpenApiParameter("task_id", str, OpenApiParameter.PATH, description="The task_id of the job.",
                                     examples=[OpenApiExample("task", summary="A task_id", value=EXAMPLE_REQUEST["task_id"])])],
        responses={
            200: RestoreCreateApi.OutputSerializer,
            401: RESTORE_401,
            404: error_response(ErrorSerializer, RESTORE_ERRORS, "not_found", "no such job, or another user's (code 404)",
                                "task_id: no restore job 'job-42'"),
        },
        tags=["restore"],
    )
    def get(self, request, task_id: str):
        job = restore_job_get(userid=request.user.userid, task_id=task_id)
        return Response(restore_job_answer(job=job))


class PutRestoreResultApi(APIView):
    """The reference receiver of the PutRestoreResult callback: signature only, no session."""

    error_family = RESTORE_ERRORS
    # no session: the signature authenticates (and the raw body is read, so nothing may parse it first)
    authentication_classes = []
    permission_classes = [AllowAny]

    OutputSerializer = ErrorSerializer

    @extend_schema_serializer(component_name="PutRestoreResultRequest")
    class InputSerializer(serializers.Serializer):
        """The seeds' PutRestoreResult body, as the service posts it to callback_url."""

        code = serializers.IntegerField(help_text="The job's error code: 0 when every file succeeded.")
        message = serializers.CharField(help_text="The job's error message.")
        type = serializers.ChoiceField(choices=[0, 1], help_text="0: a test of the network; 1: the result.")
        task_id = serializers.CharField(max_length=64, help_text="The job's task_id.")
        file_dir = serializers.CharField(help_text="The key prefix the files were copied under.")
        file_list_status = inline_serializer(
            "PutRestoreResultFile",
            {"file_name": serializers.CharField(help_text="The file name, in file_dir."),
             "file_code": serializers.IntegerField(help_text="0 success, 1 not found, 2 restore failed, 3 copy "
                                                             "failed, 4 restore timed out")},
            many=True, help_text="One entry per file of the job (type 1).",
        )

    @extend_schema(
        operation_id="put_restore_result",
        request=InputSerializer,
        examples=[OpenApiExample("result", summary="A type 1 callback (docs/api.md §3)", value=EXAMPLE_CALLBACK,
                                 request_only=True)],
        auth=[{}],
        tags=["restore"],
        responses={
            200: OutputSerializer,
            400: error_response(OutputSerializer, RESTORE_ERRORS, "invalid", "no delivery id, or not a JSON object",
                                "X-Resourced-Delivery: required (at most 64 characters)", "body: not a JSON object"),
            401: error_response(OutputSerializer, RESTORE_ERRORS, "auth", "missing, bad or stale signature (code 401)",
                                "X-Resourced-Signature: missing"),
        },
        parameters=[
            OpenApiParameter(http_callbacks.SIGNATURE_HEADER, str, OpenApiParameter.HEADER, required=True,
                             description="t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<delivery id>.<body>'>",
                             examples=[OpenApiExample("signature", value="t=1763805845,v1=" + "5e" * 32)]),
            OpenApiParameter(http_callbacks.DELIVERY_HEADER, str, OpenApiParameter.HEADER, required=True,
                             description="the delivery id, the same on every retry; signed with the body",
                             examples=[OpenApiExample("delivery", value="d-9f0c4e6a1b2d4c8e8f7a6b5c4d3e2f10")]),
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
