"""Domain errors and the one DRF exception handler that turns them into each endpoint's JSON.

Services raise ``ServiceError`` subclasses with a *kind* (``invalid``, ``auth``, ``not_found``,
``quota``, ``conflict``, ``internal``). A view names its ``error_family``; the family knows the
keys and codes of its endpoints (``ErrorCode``/``ErrorMessage`` for resource APIs,
``errCode``/``message`` for imgbed delete, ``code``/``message`` for restore). Views carry no
try/except.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework import status as http
from rest_framework.response import Response

from resourced.parsers import BodyTooLarge

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    kind = "invalid"
    status = http.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, kind: str | None = None, status: int | None = None, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind
        if status is not None:
            self.status = status
        self.extra = extra or {}


class InvalidInput(ServiceError):
    kind = "invalid"
    status = http.HTTP_400_BAD_REQUEST


class NotFound(ServiceError):
    kind = "not_found"
    status = http.HTTP_404_NOT_FOUND


@dataclass(frozen=True)
class ErrorFamily:
    code_key: str
    message_key: str
    codes: dict[str, int]
    base: Callable[[], dict] = field(default=dict)

    def body(self, kind: str, message: str, extra: dict | None = None) -> dict:
        body = self.base()
        body.update(extra or {})
        if kind not in self.codes:
            kind = KIND_FALLBACKS.get(kind, "internal")
        body[self.code_key] = self.codes.get(kind, self.codes.get("internal", -1))
        body[self.message_key] = message
        return body


# a family without a code of its own for a kind answers the code of the broader kind
KIND_FALLBACKS = {"too_large": "invalid"}

RESOURCE_ERRORS = ErrorFamily(
    "ErrorCode",
    "ErrorMessage",
    {"invalid": -2, "auth": -3, "quota": -4, "not_found": -1, "conflict": -2, "internal": -9},
)
GENERIC_ERRORS = ErrorFamily("code", "message", {"invalid": 400, "too_large": 413, "auth": 401, "not_found": 404,
                                                 "quota": 429, "conflict": 409, "internal": 500})


def describe_validation_error(detail, prefix: str = "") -> str:
    """A flat 'Field: rule' message from DRF's nested ValidationError detail."""
    if isinstance(detail, dict):
        parts = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            label = f"{prefix}.{name}" if prefix and name else (name or prefix)
            parts.append(describe_validation_error(value, label))
        return "; ".join(p for p in parts if p)
    if isinstance(detail, list):
        parts = [describe_validation_error(item, prefix) for item in detail]
        return "; ".join(dict.fromkeys(p for p in parts if p))
    text = str(detail)
    return f"{prefix}: {text}" if prefix else text


def _classify(exc) -> tuple[str, int, str, dict]:
    if isinstance(exc, ServiceError):
        return exc.kind, exc.status, exc.message, exc.extra
    if isinstance(exc, drf_exceptions.ValidationError):
        return "invalid", 400, describe_validation_error(exc.detail), {}
    if isinstance(exc, drf_exceptions.ParseError):
        return "invalid", 400, f"body: not valid JSON or form data ({exc.detail})", {}
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return "invalid", 415, f"Content-Type: {exc.detail}", {}
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        return "auth", 401, str(exc.detail), {}
    if isinstance(exc, drf_exceptions.PermissionDenied):
        return "auth", 403, str(exc.detail), {}
    if isinstance(exc, drf_exceptions.NotFound):
        return "not_found", 404, str(exc.detail), {}
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return "invalid", 405, str(exc.detail), {}
    if isinstance(exc, BodyTooLarge):
        return "too_large", 413, str(exc.detail), {}
    # Django's own bounds on form bodies, met while a parser reads one (SuspiciousOperation, which
    # would otherwise be a 500 here)
    if isinstance(exc, RequestDataTooBig):
        return "too_large", 413, f"body: form fields over the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes", {}
    if isinstance(exc, TooManyFieldsSent):
        return "invalid", 400, f"body: more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} form fields", {}
    if isinstance(exc, TooManyFilesSent):
        return "invalid", 400, f"body: more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files", {}
    if isinstance(exc, drf_exceptions.Throttled):
        wait_ms = int((exc.wait or 1) * 1000)
        return "quota", 429, f"too many requests from this session; try again in {wait_ms} ms", {"TimeWait": wait_ms}
    if isinstance(exc, drf_exceptions.APIException):
        return "invalid", exc.status_code, str(exc.detail), {}
    return "internal", 500, "internal error", {}


def exception_handler(exc, context):
    kind, status, message, extra = _classify(exc)
    view = context.get("view")
    family: ErrorFamily = getattr(view, "error_family", GENERIC_ERRORS)
    if status >= 500:
        logger.exception("unhandled error in %s", type(view).__name__ if view else "view", exc_info=exc)
    response = Response(family.body(kind, message, extra), status=status)
    if status == 401 and view is not None:
        # how to authenticate, as HTTP asks of a 401 (DRF set it on its own auth exceptions)
        challenge = getattr(exc, "auth_header", None) or view.get_authenticate_header(context.get("request"))
        if challenge:
            response["WWW-Authenticate"] = challenge
    if status == 405 and isinstance(exc, drf_exceptions.MethodNotAllowed):
        response["Allow"] = ", ".join(getattr(view, "allowed_methods", []))
    return response


@dataclass(frozen=True)
class _UrlSpace:
    """Unknown URLs that answer in an app's error shape: under `prefix`, for `methods` (all when
    empty), and, with `below`, only those that go on past a further '/' (`<prefix><path>/<name>`)."""

    prefix: str
    family: ErrorFamily
    methods: tuple[str, ...] = ()
    below: bool = False

    def holds(self, request) -> bool:
        if not request.path.startswith(self.prefix) or (self.methods and request.method not in self.methods):
            return False
        return not self.below or "/" in request.path[len(self.prefix):]


# registered by the apps; the longest prefix that holds an unknown URL decides its shape
_url_spaces: list[_UrlSpace] = []


def register_error_family(prefixes: tuple[str, ...], family: ErrorFamily, *, methods: tuple[str, ...] = (),
                          below: bool = False) -> None:
    """Unknown URLs under these path prefixes answer 404 in `family`'s shape: only for `methods`
    when given, and with `below` only URLs of the form `<prefix><path>/<name>`. A longer prefix
    comes first, so that an API's own prefix is not taken by a wider one (the image bed's root)."""
    for prefix in prefixes:
        _url_spaces.append(_UrlSpace(prefix, family, tuple(methods), below))
    _url_spaces.sort(key=lambda space: len(space.prefix), reverse=True)


def json_404(request, exception=None):
    """An unknown URL answers in the shape of the endpoint family its path belongs to."""
    message = f"{request.path}: not found"
    family = next((space.family for space in _url_spaces if space.holds(request)), GENERIC_ERRORS)
    return JsonResponse(family.body("not_found", message), status=404)


def json_500(request):
    return JsonResponse({"code": 500, "message": "internal error"}, status=500)


def json_400(request, exception=None):
    return JsonResponse({"code": 400, "message": "bad request"}, status=400)


def json_403(request, exception=None):
    return JsonResponse({"code": 403, "message": "forbidden"}, status=403)
