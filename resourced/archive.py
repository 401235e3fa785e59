"""Objects in S3 archive storage classes: whether one can be read now, and asking S3 to restore it.

Shared by the restore app (files restored on request) and the export pipeline (recordings whose
segments aged into an archive class), so that both read S3's answers the same way. No app is
imported here.
"""

import re
from dataclasses import dataclass

from resourced.s3 import error_code

ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")  # GLACIER_IR is readable at once: never restored
ARCHIVE_TIERS = ("ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS")  # Intelligent-Tiering archive status
RESTORE_TIERS = ("Expedited", "Standard", "Bulk")

# How long S3 usually takes to restore, per class and tier (AWS's published retrieval times, the
# upper end), for the TimeWait of an export that waits on restores.
TYPICAL_RESTORE_SECONDS = {
    ("GLACIER", "Expedited"): 5 * 60,
    ("GLACIER", "Standard"): 5 * 3600,
    ("GLACIER", "Bulk"): 12 * 3600,
    ("DEEP_ARCHIVE", "Standard"): 12 * 3600,
    ("DEEP_ARCHIVE", "Bulk"): 48 * 3600,
}
_EXPIRY = re.compile(r'expiry-date="([^"]+)"')


class RestoreRefused(Exception):
    """S3 will not restore the object with this tier (Expedited of a DEEP_ARCHIVE object, or no
    Expedited capacity), and falling back to another tier was not allowed."""


@dataclass(frozen=True)
class ArchiveState:
    """What a HEAD of an object says about reading it."""

    storage_class: str
    archived: bool  # in a class (or an Intelligent-Tiering tier) that a GET cannot read
    intelligent: bool  # an Intelligent-Tiering archive tier (its restores take no Days)
    restore: str  # "": no restore asked for (or it expired); "ongoing"; "done"
    expiry: str = ""  # when a done restore's copy goes away (S3's expiry-date), if S3 says

    @property
    def readable(self) -> bool:
        return not self.archived or self.restore == "done"


def archive_state(head: dict) -> ArchiveState:
    """The ArchiveState of a head_object answer."""
    storage_class = head.get("StorageClass") or "STANDARD"
    intelligent = head.get("ArchiveStatus") in ARCHIVE_TIERS
    header = head.get("Restore") or ""
    restore = "done" if 'ongoing-request="false"' in header else "ongoing" if 'ongoing-request="true"' in header else ""
    expiry = _EXPIRY.search(header)
    return ArchiveState(storage_class=storage_class, archived=storage_class in ARCHIVE_CLASSES or intelligent,
                        intelligent=intelligent, restore=restore, expiry=expiry.group(1) if expiry else "")


def typical_restore_seconds(storage_class: str, tier: str) -> int:
    return TYPICAL_RESTORE_SECONDS.get((storage_class, tier)) or TYPICAL_RESTORE_SECONDS[("GLACIER", "Standard")]


def request_restore(client, *, bucket: str, key: str, state: ArchiveState, tier: str, days: int,
                    fall_back: bool) -> str:
    """Ask S3 to restore an archived object; returns the tier asked for, or "" when a restore was
    already in progress (someone else asked). With `fall_back`, a tier S3 refuses for the object
    becomes Standard; without, RestoreRefused says why. Other S3 errors are raised as botocore
    raised them."""
    if tier == "Expedited" and (state.storage_class == "DEEP_ARCHIVE" or state.intelligent):
        if not fall_back:
            where = "Intelligent-Tiering archive" if state.intelligent else "DEEP_ARCHIVE"
            raise RestoreRefused(f"S3 has no Expedited restores of {where} objects")
        tier = "Standard"
    for attempt_tier in dict.fromkeys([tier, "Standard"] if fall_back else [tier]):
        request = {"GlacierJobParameters": {"Tier": attempt_tier}}
        if not state.intelligent:  # Intelligent-Tiering restores take no Days
            request["Days"] = days
        try:
            client.restore_object(Bucket=bucket, Key=key, RestoreRequest=request)
        except Exception as exc:  # noqa: BLE001 (classified here, else raised as it came)
            code = error_code(exc)
            if code == "RestoreAlreadyInProgress":
                return ""
            if code == "GlacierExpeditedRetrievalNotAvailable":
                if attempt_tier != "Standard" and fall_back:
                    continue
                raise RestoreRefused(f"S3 refused the {attempt_tier} restore: {code}") from exc
            raise
        return attempt_tier
    return "Standard"  # not reached: the last tier either returns or raises
