"""The image bed's object store: django-storages' S3 backend on IMGBED_BUCKET.

The storage is built when used, from the settings of that moment (the endpoint, the bucket and the
keys may change at run time, as in the tests), and cached per configuration so that its boto3
connection pool is reused. Reads stream the object body in chunks; nothing reads a whole object
into memory.
"""

import functools
import logging

import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from django.conf import settings
from django.core.files import File
from storages.backends.s3 import S3Storage

from imgbed.errors import ImageNotFound, ImageStorageError
from resourced.s3 import is_not_found

logger = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
_STORAGE_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def imgbed_storage() -> S3Storage:
    """An S3Storage configured from the current settings."""
    return _storage_for(
        settings.IMGBED_BUCKET,
        settings.RESOURCED_S3_ENDPOINT_URL or None,
        settings.AWS_ACCESS_KEY_ID,
        settings.AWS_SECRET_ACCESS_KEY,
        settings.AWS_REGION,
    )


@functools.lru_cache(maxsize=16)
def _storage_for(bucket: str, endpoint_url: str | None, access_key: str, secret_key: str, region: str) -> S3Storage:
    return S3Storage(
        bucket_name=bucket,
        endpoint_url=endpoint_url,
        access_key=access_key,
        secret_key=secret_key,
        region_name=region,
        addressing_style="path",
        signature_version="s3v4",
        file_overwrite=True,
        default_acl=None,
        querystring_auth=False,
        client_config=Config(
            region_name=region,
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            max_pool_connections=settings.S3_MAX_POOL_CONNECTIONS,
            connect_timeout=settings.S3_CONNECT_TIMEOUT,
            read_timeout=settings.S3_READ_TIMEOUT,
            retries={"max_attempts": settings.S3_MAX_ATTEMPTS, "mode": "standard"},
        ),
        # Images are at most IMGBED_MAX_BYTES: one PUT in the request's own thread.
        transfer_config=TransferConfig(
            multipart_threshold=settings.S3_MULTIPART_THRESHOLD,
            multipart_chunksize=settings.S3_MULTIPART_CHUNKSIZE,
            use_threads=False,
        ),
    )


def _storage_failure(action: str, key: str, exc: Exception) -> ImageStorageError:
    logger.warning("image store: %s %s failed: %s", action, key, exc)
    return ImageStorageError(f"image storage unavailable ({action} failed), try again")


def object_put(*, key: str, fileobj, content_type: str) -> None:
    """Store a file object (read from its start) under key with the given Content-Type."""
    content = File(fileobj, name=key)
    content.content_type = content_type  # S3Storage takes ContentType from here
    storage = imgbed_storage()
    try:
        saved = storage.save(key, content)
    except _STORAGE_ERRORS as exc:
        raise _storage_failure("write", key, exc) from exc
    if saved != key:  # file_overwrite=True keeps the name; anything else is a configuration error
        raise ImageStorageError(f"image storage renamed {key!r} to {saved!r}")


def object_exists(*, key: str) -> bool:
    try:
        return imgbed_storage().exists(key)
    except _STORAGE_ERRORS as exc:
        raise _storage_failure("head", key, exc) from exc


def object_delete(*, key: str) -> None:
    try:
        imgbed_storage().delete(key)
    except _STORAGE_ERRORS as exc:
        raise _storage_failure("delete", key, exc) from exc


class ObjectStream:
    """Iterates an S3 object body in chunks; close() releases the connection."""

    def __init__(self, body, length: int, chunk_size: int = CHUNK_SIZE):
        self._body = body
        self.length = length
        self._chunk_size = chunk_size

    def __iter__(self):
        return self._body.iter_chunks(self._chunk_size)

    def close(self) -> None:
        self._body.close()


def object_stream(*, key: str) -> ObjectStream:
    """Open an object for streaming; ImageNotFound when it is absent."""
    storage = imgbed_storage()
    try:
        answer = storage.connection.meta.client.get_object(Bucket=storage.bucket_name, Key=key)
    except _STORAGE_ERRORS as exc:
        if is_not_found(exc):
            raise ImageNotFound(f"{key}: no such image") from exc
        raise _storage_failure("read", key, exc) from exc
    return ObjectStream(answer["Body"], int(answer["ContentLength"]))
