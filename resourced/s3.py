"""boto3 clients for every S3 use of the service, all pointed at RESOURCED_S3_ENDPOINT_URL.

Credentials are passed per client and never logged. Clients are cached per (region,
credentials) in the process, since creating one costs milliseconds and a pool of connections.
"""

import functools
import hashlib
from dataclasses import dataclass

import boto3
import botocore.exceptions
from botocore.config import Config
from django.conf import settings


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
