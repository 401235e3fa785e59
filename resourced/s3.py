"""boto3 clients for every S3 use of the service, all pointed at RESOURCED_S3_ENDPOINT_URL.

Credentials are passed per client and never logged. Clients are cached per (region,
credentials) in the process, since creating one costs milliseconds and a pool of connections.
"""

import contextvars
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from django.conf import settings

# Errors worth retrying, for every S3 use of the service: the connection failed or broke, or the
# store answered 5xx or asked to slow down. Anything else (denied, no such key, bad request) is final.
TRANSIENT_EXCEPTIONS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
)
TRANSIENT_CODES = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                   "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}


@dataclass(frozen=True)
class S3Location:
    """A bucket on the configured endpoint, with the credentials to use it."""

    bucket: str
    region: str = ""
    prefix: str = ""
    access_key: str = ""
    secret_key: str = ""

    def __repr__(self) -> str:  # never print credentials
        return f"S3Location(bucket={self.bucket!r}, region={self.region!r}, prefix={self.prefix!r})"

    def key(self, path: str) -> str:
        path = path.lstrip("/")
        return f"{self.prefix.strip('/')}/{path}" if self.prefix.strip("/") else path

    def client(self):
        return client_for(
            region=self.region or settings.AWS_REGION,
            access_key=self.access_key or settings.AWS_ACCESS_KEY_ID,
            secret_key=self.secret_key or settings.AWS_SECRET_ACCESS_KEY,
        )


def client_for(*, region: str, access_key: str, secret_key: str):
    fingerprint = hashlib.sha256(f"{access_key}:{secret_key}".encode()).hexdigest()
    return _cached_client(region, fingerprint, access_key, secret_key, settings.RESOURCED_S3_ENDPOINT_URL)


@functools.lru_cache(maxsize=64)
def _cached_client(region, _fingerprint, access_key, secret_key, endpoint_url):
    config = Config(
        region_name=region,
        max_pool_connections=settings.S3_MAX_POOL_CONNECTIONS,
        connect_timeout=settings.S3_CONNECT_TIMEOUT,
        read_timeout=settings.S3_READ_TIMEOUT,
        retries={"max_attempts": settings.S3_MAX_ATTEMPTS, "mode": "standard"},
        s3={"addressing_style": "path"},
        signature_version="s3v4",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or None,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


def default_client():
    return S3Location(bucket="").client()


def is_not_found(exc: Exception) -> bool:
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")
    return False


def is_archived(exc: BaseException) -> bool:
    """A GET refused because the object is in an archive storage class and not restored
    (resourced.archive tells what to do about it)."""
    return error_code(exc) == "InvalidObjectState"


def is_transient(exc: BaseException) -> bool:
    """Whether an S3 call that raised `exc` may succeed when tried again."""
    if isinstance(exc, TRANSIENT_EXCEPTIONS):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or error_code(exc) in TRANSIENT_CODES
    return False


def s3_cause(exc: BaseException) -> BaseException | None:
    """The botocore error behind `exc`: itself, or what s3transfer wrapped (multipart parts)."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)):
            return candidate
    return None


def transfer_config(*, threshold: int | None = None, chunksize: int | None = None,
                    max_concurrency: int = 4) -> TransferConfig:
    """s3transfer's settings for uploads and copies (multipart above the threshold)."""
    return TransferConfig(
        multipart_threshold=threshold or settings.S3_MULTIPART_THRESHOLD,
        multipart_chunksize=chunksize or settings.S3_MULTIPART_CHUNKSIZE,
        max_concurrency=max_concurrency,
    )


@dataclass(frozen=True)
class Downloaded:
    missing: list[str]  # names (keys, or part names) not in the bucket
    files: int
    bytes: int
    archived: tuple[str, ...] = ()  # storage keys a GET could not read: archived, not restored


def _item(item) -> tuple[str, str, tuple[int, int] | None]:
    """(local name, storage key, byte range) of a download_objects item."""
    if isinstance(item, str):
        return item, item, None
    byte_range = item.byte_range
    return item.name, item.key, (tuple(byte_range) if byte_range is not None else None)


def _get_object_args(location: S3Location, key: str, byte_range: tuple[int, int] | None) -> dict:
    args = {"Bucket": location.bucket, "Key": location.key(key)}
    if byte_range is not None:
        args["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
    return args


def _ignored_range(response: dict, byte_range: tuple[int, int] | None) -> bool:
    """A store that ignores Range answers 200 with the whole object (no Content-Range)."""
    return byte_range is not None and not response.get("ContentRange")


def read_object(*, location: S3Location, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
    """One object, or the inclusive byte range (first, last) of it, in memory (manifests, indexes)."""
    response = location.client().get_object(**_get_object_args(location, key, byte_range))
    body = response["Body"].read()
    if _ignored_range(response, byte_range):
        body = body[byte_range[0]:byte_range[1] + 1]
    return body


def download_objects(*, location: S3Location, keys: Iterable, path_for: Callable[[str], Path],
                     concurrency: int = 8, on_object: Callable[[int], None] | None = None) -> Downloaded:
    """GET `keys` in parallel into path_for(name), each written under a temporary name then renamed.

    An item is a storage key (the whole object, into path_for(key)), or a part of one: anything
    with ``.name``, ``.key`` and ``.byte_range`` (``(first, last)``, inclusive, or None for the
    whole object), like ``exports.media.Part``: a ranged GET (``Range: bytes=first-last``) of only
    those bytes into path_for(name), so that each range is a file of its own.

    A name whose file is already there (a redelivered step) is kept; an object not in the bucket
    (or a range it does not hold) is reported in `missing` by name; any other error is raised as
    botocore raised it (see is_transient). on_object(n) is called from the fetching threads each
    time an item is done (n so far). `bytes` counts the bytes of the files (what was fetched).
    """
    client = location.client()
    done = {"files": 0, "bytes": 0}
    lock = threading.Lock()
    missing: list[str] = []
    archived: set[str] = set()

    def get(item) -> None:
        name, key, byte_range = _item(item)
        path = path_for(name)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(path.name + ".part")
            try:
                # one GET per object, streamed to the file (s3transfer's download_file sends a HEAD
                # before each GET: twice the requests for segments of a few hundred kB)
                response = client.get_object(**_get_object_args(location, key, byte_range))
                body = response["Body"]
                skip, left = 0, None  # a store that ignored Range: keep only the range
                if _ignored_range(response, byte_range):
                    skip, left = byte_range[0], byte_range[1] - byte_range[0] + 1
                with open(part, "wb") as handle:
                    for chunk in body.iter_chunks(1 << 20):
                        if skip:
                            cut = min(skip, len(chunk))
                            chunk, skip = chunk[cut:], skip - cut
                        if left is not None:
                            chunk = chunk[:left]
                            left -= len(chunk)
                        if chunk:
                            handle.write(chunk)
                        if left == 0:
                            break
                body.close()
            except botocore.exceptions.ClientError as exc:
                part.unlink(missing_ok=True)
                if is_not_found(exc) or error_code(exc) in ("InvalidRange", "416"):
                    with lock:
                        missing.append(name)
                    return
                if is_archived(exc):
                    with lock:
                        archived.add(key)
                    return
                raise
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            os.replace(part, path)
        size = path.stat().st_size
        with lock:
            done["files"] += 1
            done["bytes"] += size
            count = done["files"]
        if on_object:
            on_object(count)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        # each fetch runs in a copy of this context, so its log lines carry the caller's TaskId too
        futures = [pool.submit(contextvars.copy_context().run, get, item) for item in keys]
        for future in futures:
            future.result()
    return Downloaded(missing=missing, files=done["files"], bytes=done["bytes"], archived=tuple(sorted(archived)))


class ObjectExists(Exception):
    """A conditional write found an object at the key (another writer got there first)."""


def is_precondition_failed(exc: BaseException) -> bool:
    return error_code(exc) in ("PreconditionFailed", "412")


def upload_if_absent(*, location: S3Location, key: str, path: Path, extra: dict,
                     on_bytes: Callable[[int], None] | None = None, overwrite: bool = False) -> None:
    """Upload the file at `path` to `key` only if no object is there (S3's conditional write,
    ``If-None-Match: *``, on the PUT or on the CompleteMultipartUpload); ObjectExists when one
    is. With `overwrite` the write is unconditional (an object this writer put there itself).

    s3transfer's upload_file cannot send If-None-Match, hence these few lines: one PUT below
    S3_MULTIPART_THRESHOLD, else the parts in parallel and the condition on the completion.
    on_bytes(n) is called as bytes are sent (per part for multipart uploads).
    """
    client = location.client()
    bucket, object_key = location.bucket, location.key(key)
    condition = {} if overwrite else {"IfNoneMatch": "*"}
    size = path.stat().st_size
    try:
        if size < settings.S3_MULTIPART_THRESHOLD:
            with open(path, "rb") as handle:
                client.put_object(Bucket=bucket, Key=object_key, Body=handle, **extra, **condition)
            if on_bytes:
                on_bytes(size)
            return
        _multipart_upload(client, bucket=bucket, key=object_key, path=path, size=size, extra=extra,
                          condition=condition, on_bytes=on_bytes)
    except botocore.exceptions.ClientError as exc:
        if is_precondition_failed(exc):
            raise ObjectExists(key) from exc
        raise


def _multipart_upload(client, *, bucket: str, key: str, path: Path, size: int, extra: dict, condition: dict,
                      on_bytes: Callable[[int], None] | None) -> None:
    chunk = max(settings.S3_MULTIPART_CHUNKSIZE, 5 * 1024 * 1024)  # S3's smallest part but the last
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]

    def send(number: int) -> dict:
        with open(path, "rb") as handle:
            handle.seek((number - 1) * chunk)
            data = handle.read(chunk)
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)["ETag"]
        if on_bytes:
            on_bytes(len(data))
        return {"PartNumber": number, "ETag": etag}

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            parts = list(pool.map(send, range(1, (size + chunk - 1) // chunk + 1)))
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": parts}, **condition)
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            pass  # the bucket's lifecycle rule removes what is left of it
        raise


MAX_KEY_LENGTH = 1024


def relative_key_problem(value: str, *, max_length: int = MAX_KEY_LENGTH) -> str | None:
    """Why `value` is not a safe relative object key ('/'-separated, no '.' or '..', no control
    characters, no backslash, no empty element), or None when it is one."""
    if not value:
        return "is empty"
    if value.startswith("/"):
        return "must be relative (no leading '/')"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "must not contain control characters"
    if "\\" in value:
        return "must not contain backslashes"
    parts = value.split("/")
    if ".." in parts or "." in parts:
        return "must not contain '.' or '..' segments"
    if "" in parts:
        return "must not contain empty segments ('//' or a trailing '/')"
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    return None


def error_code(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return type(exc).__name__


def ensure_buckets(names) -> None:
    """Create buckets that do not exist yet (the embedded endpoint starts empty)."""
    client = default_client()
    for name in names:
        try:
            client.head_bucket(Bucket=name)
        except botocore.exceptions.ClientError:
            client.create_bucket(Bucket=name)
