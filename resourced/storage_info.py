"""The ``storage_info`` request field (docs/api.md §1 "Choosing the source storage").

A client sends base64 of a JSON list of storages::

    [{"storage_purpose": "ts", "storage_type": "S3", "storage_enable": true,
      "storage_name": "mma-video-archive", "storage_location": "us-west-1",
      "storage_description": "", "storage_root_folder": ""}, ...]

``storage_name`` is the bucket, ``storage_location`` the region and ``storage_root_folder`` a key
prefix. The seeds print the list as ``"storage_info" : [ ... ]``, so the decoded text may also be
that fragment or an object ``{"storage_info": [...]}``; both are accepted.

Every problem is an ``InvalidInput`` whose message starts with ``storage_info:`` and says which it
is: not base64, not JSON, not a list of storage objects, or no enabled S3 entry for the purpose.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass

from resourced.errors import InvalidInput
from resourced.s3 import S3Location

FIELD = "storage_info"
MAX_ENCODED_LENGTH = 64 * 1024
# S3 bucket names (3-63 of lowercase letters, digits, dots, hyphens); a little wider to allow
# the legacy names some S3-compatible stores accept (uppercase, underscores).
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
_REGION = re.compile(r"^[A-Za-z0-9-]{0,64}$")
_ENABLED_VALUES = (True, 1, "true", "True", "TRUE", "1", "yes")


@dataclass(frozen=True)
class StorageEntry:
    """One element of the list, as the client sent it (index is its position, from 0)."""

    index: int
    purpose: str
    storage_type: str
    enabled: bool
    bucket: str
    region: str
    root_folder: str

    @property
    def usable(self) -> bool:
        return self.enabled and self.storage_type.upper() == "S3"

    def location(self) -> S3Location:
        entry = f"{FIELD}: entry {self.index}"
        if not self.bucket:
            raise InvalidInput(f"{entry}: storage_name (the bucket) is empty")
        if not _BUCKET.match(self.bucket):
            raise InvalidInput(f"{entry}: storage_name {self.bucket!r} is not a bucket name")
        if not _REGION.match(self.region):
            raise InvalidInput(f"{entry}: storage_location {self.region!r} is not a region name")
        prefix = self.root_folder.strip("/")
        if _unsafe_path(prefix):
            raise InvalidInput(f"{entry}: storage_root_folder {self.root_folder!r} is not a safe relative path")
        return S3Location(bucket=self.bucket, region=self.region, prefix=prefix)


def _unsafe_path(path: str) -> bool:
    if not path:
        return False
    if "\\" in path or any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        return True
    return any(part in ("", ".", "..") for part in path.split("/"))


def _decode(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{FIELD}: not base64 (expected a non-empty base64 string)")
    if len(value) > MAX_ENCODED_LENGTH:
        raise InvalidInput(f"{FIELD}: not base64 (longer than {MAX_ENCODED_LENGTH} characters)")
    text = "".join(value.split())
    altchars = b"-_" if ("-" in text or "_" in text) else None
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{FIELD}: not base64") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{FIELD}: not JSON (the decoded bytes are not UTF-8 text)") from None


def _load(text: str):
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:  # the seeds' fragment: "storage_info" : [ ... ]
        return json.loads("{" + text + "}")
    except ValueError:
        raise InvalidInput(f"{FIELD}: not JSON") from None


def storage_entries(value: str) -> list[StorageEntry]:
    """Decode and check the shape of storage_info; every entry, usable or not."""
    data = _load(_decode(value))
    if isinstance(data, dict) and FIELD in data:
        data = data[FIELD]
    if not isinstance(data, list) or not data:
        raise InvalidInput(f"{FIELD}: not a list of storage objects (expected a non-empty JSON list)")
    entries = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise InvalidInput(f"{FIELD}: not a list of storage objects (entry {index} is not an object)")
        fields = {}
        for key in ("storage_purpose", "storage_type", "storage_name", "storage_location", "storage_root_folder"):
            raw = item.get(key)
            if raw is None:
                raw = ""
            if not isinstance(raw, str):
                raise InvalidInput(f"{FIELD}: not a list of storage objects (entry {index}: {key} is not a string)")
            fields[key] = raw.strip()
        entries.append(
            StorageEntry(
                index=index,
                purpose=fields["storage_purpose"],
                storage_type=fields["storage_type"],
                enabled=item.get("storage_enable") in _ENABLED_VALUES,
                bucket=fields["storage_name"],
                region=fields["storage_location"],
                root_folder=fields["storage_root_folder"],
            )
        )
    return entries


def select_storage(entries: list[StorageEntry], *, purpose: str | None, fallback: bool = False) -> S3Location | None:
    """The first usable (enabled S3) entry for `purpose`, matched without regard to case.

    With ``purpose=None``, or with ``fallback`` when no entry has the purpose, the first usable
    entry. None when there is no such entry.
    """
    usable = [entry for entry in entries if entry.usable]
    if purpose is not None:
        wanted = purpose.strip().lower()
        for entry in usable:
            if entry.purpose.lower() == wanted:
                return entry.location()
        if not fallback:
            return None
    return usable[0].location() if usable else None


def parse_storage_info(value: str, *, purpose: str | None, fallback: bool = False) -> S3Location:
    """The storage that `value` (base64 JSON) gives for `purpose`; InvalidInput naming the problem.

    Exports pass the first LivePath element as the purpose; restore passes ``"archive"`` with
    ``fallback=True`` (the first enabled S3 entry when none is marked ``archive``).
    """
    entries = storage_entries(value)
    location = select_storage(entries, purpose=purpose, fallback=fallback)
    if location is None:
        if purpose is None or fallback:
            raise InvalidInput(f"{FIELD}: no enabled S3 entry")
        raise InvalidInput(f"{FIELD}: no enabled S3 entry for purpose {purpose!r}")
    return location


def encode_storage_info(storages: list[dict]) -> str:
    """base64 of the JSON list (for clients, tests and the docs)."""
    return base64.b64encode(json.dumps(storages).encode()).decode()
