"""The JSON parser of every endpoint: bounded in size and depth before anything is parsed.

A body over API_MAX_JSON_BYTES is refused with 413 on its Content-Length, or after reading one
byte past the limit when the length is not declared, never read further; JSON nested deeper than
API_MAX_JSON_DEPTH is refused with 400 before Python's json module would recurse into it.

A body without a Content-Length (Transfer-Encoding: chunked) reaches the parser through
UnsizedBodyMiddleware: Django and DRF read nothing of it on their own. Without an X-Session-Id
header it is read no further than UNAUTHENTICATED_BODY_BYTES: the session it may hold is not known
before it is parsed, and a request without a valid session has no more than 64 kB of its body read.
"""

import json

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, NotAuthenticated, ParseError
from rest_framework.parsers import JSONParser

# A request without a valid session never has more of its body read (docs/api.md, "Limits on what
# a request may send"); the image upload holds its form to it too (imgbed/uploads.py).
UNAUTHENTICATED_BODY_BYTES = 64 * 1024
# request.META: set by UnsizedBodyMiddleware on a JSON body sent without a Content-Length
UNSIZED_BODY = "resourced.unsized_body"
# the session header as it appears in request.META (resourced.sessions.SESSION_HEADER, which
# imports this module through resourced.errors)
_SESSION_HEADER = "HTTP_X_SESSION_ID"


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "body: too large"
    default_code = "too_large"


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text (brackets inside strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def is_chunked(meta) -> bool:
    """A body sent with Transfer-Encoding: chunked that the WSGI server decodes and ends for us
    (gunicorn says so with wsgi.input_terminated; Django's development server cannot)."""
    return "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower() and bool(meta.get("wsgi.input_terminated"))


class UnsizedBodyMiddleware:
    """Hands a JSON body sent without a Content-Length to the endpoint's parser.

    Django's request stream ends at the Content-Length, and DRF does not call a parser at all
    without one: a chunked JSON body reached the view as if it were empty, and the WSGI server
    then read the rest of it on its own. Marked here (UNSIZED_BODY), with the largest body a JSON
    endpoint accepts standing in for the length it did not declare, it reaches BoundedJSONParser,
    which reads the server's decoded body and stops one byte past the limit. Other media types are
    left as they were: the image upload counts its own chunked bodies (imgbed/uploads.py)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        meta = request.META
        media_type = meta.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if media_type == "application/json" and not meta.get("CONTENT_LENGTH") and is_chunked(meta):
            meta[UNSIZED_BODY] = True
            meta["CONTENT_LENGTH"] = str(settings.API_MAX_JSON_BYTES)
        return self.get_response(request)


def _read_up_to(source, size: int) -> bytes:
    """At most `size` bytes of `source`, fewer only at its end."""
    parts, got = [], 0
    while got < size:
        part = source.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_bounded_body(meta, stream) -> bytes:
    """The JSON body, read no further than one byte past API_MAX_JSON_BYTES (BodyTooLarge beyond);
    one without a Content-Length, and without a session header, no further than
    UNAUTHENTICATED_BODY_BYTES (NotAuthenticated when it is as long)."""
    limit = settings.API_MAX_JSON_BYTES
    if meta.get(UNSIZED_BODY):
        # the WSGI server's decoded body: Django's own stream of this request is empty
        session_header = bool(meta.get(_SESSION_HEADER))
        wanted = limit + 1 if session_header else min(limit + 1, UNAUTHENTICATED_BODY_BYTES)
        data = _read_up_to(meta["wsgi.input"], wanted)
        if len(data) > limit:
            raise BodyTooLarge(f"body: over the limit of {limit} bytes")
        if not session_header and len(data) >= UNAUTHENTICATED_BODY_BYTES:
            raise NotAuthenticated(
                f"SessionId: required in the X-Session-Id header for a body without Content-Length of "
                f"{UNAUTHENTICATED_BODY_BYTES} bytes or more"
            )
        return data
    declared = meta.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body: {declared} bytes, over the limit of {limit}")
    data = _read_up_to(stream, limit + 1) if stream is not None else b""
    if len(data) > limit:
        raise BodyTooLarge(f"body: over the limit of {limit} bytes")
    return data


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        data = read_bounded_body(request.META if request is not None else {}, stream)
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        # counting brackets is C-speed; the character scan runs only when they could nest too deep
        limit_depth = settings.API_MAX_JSON_DEPTH
        if text.count("[") + text.count("{") > limit_depth and nesting_depth(text) > limit_depth:
            raise ParseError(f"JSON nested deeper than {limit_depth} levels")
        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")
