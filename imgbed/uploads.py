"""Limits on what an upload may send (docs/api.md, "Limits on what a request may send").

Decided on what the client has declared, or sent so far, before Django's multipart parser stores
anything:

* **The session.** An ``X-Session-Id`` header is checked before a byte of the body is read. A
  ``SessionId`` form field must come within the first ``UNAUTHENTICATED_BODY_BYTES`` of the body
  (before the files): no more of the body is read until a valid session has been seen.
* **The size.** A ``Content-Length`` over ``IMGBED_MAX_UPLOAD_BYTES`` is refused (413) before
  reading. A chunked body (no ``Content-Length``) is counted as it is read and refused one byte
  past the limit.

Both rules sit on the stream the multipart parser reads, not in an upload handler: Django's upload
handlers see a file's bytes only after the parser has read them, and never the form fields, while
both rules are about how much is read from the client.
"""

from collections.abc import Callable

from django.conf import settings
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from rest_framework.exceptions import ParseError
from rest_framework.parsers import DataAndFiles, MultiPartParser

from resourced.parsers import UNAUTHENTICATED_BODY_BYTES, BodyTooLarge, is_chunked
from resourced.sessions import SESSION_HEADER, SessionError, session_user

# UNAUTHENTICATED_BODY_BYTES (64 kB) is also the size of the chunks Django's parser reads its
# input in (FileUploadHandler.chunk_size): the first chunk holds the fields sent before the files.


def _too_large(size: str) -> BodyTooLarge:
    return BodyTooLarge(f"body: {size}, over the upload limit of {settings.IMGBED_MAX_UPLOAD_BYTES} bytes")


def upload_admit(request) -> None:
    """What is decided before a byte of the body is read: the header's session (SessionError),
    the declared size (BodyTooLarge); and a chunked body made readable."""
    meta = request.META
    header_session = meta.get(SESSION_HEADER)
    if header_session:
        session_user(session_id=header_session)
    declared = meta.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > settings.IMGBED_MAX_UPLOAD_BYTES:
        raise _too_large(f"{declared} bytes")
    if not declared and is_chunked(meta):
        # Django and DRF read nothing of a body without a Content-Length. The largest body this
        # endpoint accepts stands in for it; ImageUploadParser reads the real body, up to its end,
        # and refuses it one byte past that size.
        meta["CONTENT_LENGTH"] = str(settings.IMGBED_MAX_UPLOAD_BYTES)


class UploadBody:
    """The request body as the multipart parser reads it: counted and cut one byte past `limit`,
    and held at UNAUTHENTICATED_BODY_BYTES until `form_session()` names a valid session (unless
    the session was already checked)."""

    def __init__(self, source, *, limit: int, session_checked: bool, form_session: Callable[[], str]):
        self.source = source
        self.limit = limit
        self.session_checked = session_checked
        self.form_session = form_session
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        wanted = self.limit + 1 - self.bytes_read
        if not self.session_checked:
            window = UNAUTHENTICATED_BODY_BYTES - self.bytes_read
            if window > 0:
                wanted = min(wanted, window)
            else:
                self._check_form_session()
        if size is not None and size >= 0:
            wanted = min(wanted, size)
        data = self.source.read(wanted)
        self.bytes_read += len(data)
        if self.bytes_read > self.limit:
            raise _too_large(f"more than {self.limit} bytes")
        return data

    def _check_form_session(self) -> None:
        """The fields parsed from the first UNAUTHENTICATED_BODY_BYTES must hold a valid SessionId."""
        session_id = self.form_session()
        if not session_id:
            raise SessionError(
                f"SessionId: required in the X-Session-Id header, or as a form field within the first "
                f"{UNAUTHENTICATED_BODY_BYTES} bytes of the body (before the files)"
            )
        session_user(session_id=session_id)
        self.session_checked = True


class ImageUploadParser(MultiPartParser):
    """DRF's multipart parser, reading the body through UploadBody (what upload_admit decided
    before it is applied to every byte read)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        request = parser_context["request"]
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        # a chunked body: the Django request's own stream is cut at the Content-Length it did not
        # have, so the parser reads the WSGI server's decoded body instead
        source = meta["wsgi.input"] if is_chunked(meta) else stream
        parser = None

        def form_session() -> str:
            # The fields parsed so far. Django's parser keeps them in _post until it returns; there
            # is no public way to see them while the body is still being read.
            fields = getattr(parser, "_post", None)
            value = fields.get("SessionId") if fields is not None else ""
            return value if isinstance(value, str) else ""

        # a session header reaching the parser is a valid one: upload_admit refused any other
        body = UploadBody(source, limit=settings.IMGBED_MAX_UPLOAD_BYTES,
                          session_checked=bool(meta.get(SESSION_HEADER)), form_session=form_session)
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            parser = DjangoMultiPartParser(meta, body, request.upload_handlers, encoding)
            data, files = parser.parse()
        except MultiPartParserError as exc:
            raise ParseError(f"Multipart form parse error - {exc}") from exc
        return DataAndFiles(data, files)
