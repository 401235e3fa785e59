"""Destination credentials (ExportS3Key) at rest: Fernet, with key rotation through MultiFernet.

Keys come from EXPORT_CREDENTIALS_KEYS (newest first). The embedded setup derives one from
SECRET_KEY; production.py requires the setting.
"""

import base64
import hashlib
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return f"S3Credentials(access_key={self.access_key[:4]}…)"


def _fernet() -> MultiFernet:
    keys = list(settings.EXPORT_CREDENTIALS_KEYS)
    if not keys:
        digest = hashlib.sha256(("export-credentials:" + settings.SECRET_KEY).encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt_credentials(credentials: S3Credentials | None) -> bytes:
    if credentials is None:
        return b""
    return _fernet().encrypt(f"{credentials.access_key}:{credentials.secret_key}".encode())


def decrypt_credentials(token: bytes | memoryview) -> S3Credentials | None:
    token = bytes(token or b"")
    if not token:
        return None
    try:
        access, _, secret = _fernet().decrypt(token).decode().partition(":")
    except InvalidToken as exc:
        raise ValueError("destination credentials cannot be decrypted with the configured keys") from exc
    return S3Credentials(access, secret)


def parse_export_s3_key(value: str) -> S3Credentials:
    access, sep, secret = value.partition(":")
    if not sep or not access or not secret:
        raise ValueError("must be ACCESS_KEY_ID:SECRET_ACCESS_KEY")
    return S3Credentials(access.strip(), secret.strip())
