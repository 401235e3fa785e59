import uuid

from django.db import models
from django.db.models import Q

from resourced.models import CallbackBase, CallbackDeliveryBase


def new_task_id() -> str:
    return uuid.uuid4().hex


class Export(models.Model):
    """One clip export: the request, its state in the pipeline, and what it produced."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        WAITING = "waiting", "waiting (restores, live edge)"
        READY = "ready"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Stage(models.TextChoices):
        QUEUED = "queued"
        RESTORING = "restoring"
        WAITING = "waiting", "waiting for the live edge"
        DOWNLOAD = "download"
        CUT = "cut"
        ENCODE = "encode"
        THUMBNAIL = "thumbnail"
        UPLOAD = "upload"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class ExportType(models.IntegerChoices):
        COPY = 0, "keep codec"
        H264 = 1, "H.264"
        H265 = 2, "H.265"

    class CutMode(models.TextChoices):
        ACCURATE = "accurate", "to the frame"
        KEYFRAME = "keyframe", "from the keyframe before"

    # WAITING: no worker holds it; its download runs again at next_check_at
    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.WAITING)
    WORKING = (Status.QUEUED, Status.RUNNING)  # what loads the workers (quota, saturation)
    LIVE = (Status.QUEUED, Status.RUNNING, Status.WAITING, Status.READY)

    task_id = models.CharField(max_length=32, unique=True, default=new_task_id, editable=False)
    idempotency_key = models.CharField(max_length=64, db_index=True, editable=False)

    # the request
    service_caller = models.CharField(max_length=16)
    userid = models.CharField(max_length=255, blank=True, db_index=True)
    owner = models.CharField(max_length=255, blank=True, db_index=True,
                             help_text="the user of the session that created it: only that user sees it")
    live_path = models.CharField(max_length=1024)
    peer_id = models.CharField(max_length=255)
    file_name = models.CharField(max_length=255)
    export_type = models.PositiveSmallIntegerField(choices=ExportType.choices, default=ExportType.COPY)
    export_format = models.CharField(max_length=4, default="ts")
    cut_mode = models.CharField(max_length=8, choices=CutMode.choices, default=CutMode.ACCURATE)
    callback_url = models.CharField(max_length=2048, blank=True,
                                    help_text="CallbackUrl: receives the poll body when the export ends")
    restore_tier = models.CharField(max_length=10, blank=True,
                                    help_text="RestoreTier for archived segments; empty: EXPORT_RESTORE_TIER")
    start_pos = models.BigIntegerField(help_text="epoch ms")
    start_time_ms = models.BigIntegerField(help_text="StartTime, ms into the recording")
    duration_ms = models.BigIntegerField()

    # storages (credentials for the destination only, encrypted, erased when the export ends)
    source_bucket = models.CharField(max_length=255)
    source_region = models.CharField(max_length=64, blank=True)
    source_prefix = models.CharField(max_length=1024, blank=True)
    dest_bucket = models.CharField(max_length=255)
    dest_region = models.CharField(max_length=64, blank=True)
    dest_credentials = models.BinaryField(blank=True, default=b"", editable=False)

    # state
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.QUEUED)
    ended_in_stage = models.CharField(max_length=16, blank=True,
                                      help_text="the stage a failed or cancelled export was in when it ended")
    progress = models.PositiveSmallIntegerField(default=0)
    error_code = models.SmallIntegerField(default=1)
    error_message = models.CharField(max_length=1024, blank=True)
    host = models.CharField(max_length=255, blank=True, help_text="worker host holding the work dir")
    attempts = models.JSONField(default=dict, blank=True, help_text="attempts per stage")
    restarts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # while waiting (Status.WAITING): when the download looks again, when the wait ends, and what
    # it waits on (the restores asked for, the live edge and the manifest's digest)
    next_check_at = models.DateTimeField(null=True, blank=True)
    wait_deadline = models.DateTimeField(null=True, blank=True)
    waiting_on = models.JSONField(default=dict, blank=True)

    # results
    origin_ms = models.BigIntegerField(null=True, blank=True, help_text="wall-clock origin of the recording")
    clip_start_ms = models.FloatField(null=True, blank=True, help_text="start of the clip in recording time")
    lead_ms = models.FloatField(default=0)
    lack_ms = models.BigIntegerField(default=0)
    image_path = models.CharField(max_length=1024, blank=True)
    video_path = models.CharField(max_length=1024, blank=True)
    video_key = models.CharField(max_length=1024, blank=True)
    output_bytes = models.BigIntegerField(default=0)
    output_start_ms = models.FloatField(null=True, blank=True,
                                        help_text="where the clip's first frame is, in recording time (ClipStart)")
    output_duration_ms = models.FloatField(null=True, blank=True, help_text="the clip's real length (ClipDuration)")
    bytes_needed = models.BigIntegerField(default=0, help_text="bytes of the segments that overlap the clip")
    bytes_downloaded = models.BigIntegerField(default=0)
    segments_missing = models.PositiveIntegerField(default=0)
    skipped_segments = models.JSONField(default=list, blank=True,
                                        help_text="damaged segments left out of the clip (their time is in lack_ms)")
    timings = models.JSONField(default=dict, blank=True, help_text="seconds per stage")
    step_hosts = models.JSONField(default=dict, blank=True, help_text="worker host that ran each stage")

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # one live export per request; a failed or cancelled one leaves room for a new attempt
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(status__in=["queued", "running", "waiting", "ready"]),
                name="export_one_live_per_request",
            )
        ]

    def __str__(self) -> str:
        return f"{self.task_id} {self.live_path} [{self.status}]"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @classmethod
    def remuxes(cls, *, export_type: int, cut_mode: str) -> bool:
        """A stream copy from keyframes (a remux: packets rewrapped, nothing encoded): its download
        task makes all of it (exports/stages.py), its audio is fetched from the keyframe before
        the start."""
        return export_type == cls.ExportType.COPY and cut_mode == cls.CutMode.KEYFRAME

    @property
    def is_remux(self) -> bool:
        return self.remuxes(export_type=self.export_type, cut_mode=self.cut_mode)

    @property
    def total_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class ExportCallback(CallbackBase):
    """The poll body of a finished (ready, failed, cancelled) export, sent to its CallbackUrl,
    signed and retried like the restore callbacks (resourced.callbacks.delivery)."""

    export = models.ForeignKey(Export, on_delete=models.CASCADE, related_name="callbacks")
    generation = models.PositiveSmallIntegerField(default=0, help_text="Export.restarts when it ended: a retried "
                                                                        "export calls back again when it ends again")

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["export", "generation"], name="export_callback_one_per_end")]

    def __str__(self) -> str:
        return f"callback of {self.export.task_id} ({self.state})"

    @property
    def subject(self) -> str:
        return f"export {self.export.task_id}"


class ExportCallbackDelivery(CallbackDeliveryBase):
    """One attempt to deliver an ExportCallback."""

    callback = models.ForeignKey(ExportCallback, on_delete=models.CASCADE, related_name="deliveries")

    class Meta:
        ordering = ["callback", "attempt"]
        verbose_name_plural = "export callback deliveries"
        constraints = [models.UniqueConstraint(fields=["callback", "attempt"], name="export_delivery_unique_attempt")]


class Quota(models.Model):
    """Limits for a userid, a ServiceCaller, or everyone (the default row)."""

    class Scope(models.TextChoices):
        DEFAULT = "default"
        CALLER = "caller", "ServiceCaller"
        USER = "user", "userid"

    scope = models.CharField(max_length=16, choices=Scope.choices)
    subject = models.CharField(max_length=255, blank=True, help_text="the userid or ServiceCaller; empty for the default")
    max_active_exports = models.PositiveIntegerField(default=4, help_text="queued + running at once")
    max_waiting = models.PositiveIntegerField(
        default=20, help_text="exports waiting on archive restores or the live edge at once")
    max_clip_ms = models.PositiveBigIntegerField(default=2 * 3600 * 1000, help_text="longest clip, ms")
    max_minutes_per_day = models.PositiveIntegerField(default=600, help_text="exported minutes per UTC day")
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "subject"], name="quota_one_per_subject")]

    def __str__(self) -> str:
        return f"{self.scope}:{self.subject}" if self.subject else "default"


class Thumbnail(models.Model):
    """A getthumbnail request: one frame of a recording stored in the image bed."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        READY = "ready"
        FAILED = "failed"

    task_id = models.CharField(max_length=32, unique=True, default=new_task_id, editable=False)
    idempotency_key = models.CharField(max_length=64, unique=True, editable=False)
    userid = models.CharField(max_length=255, blank=True)
    live_path = models.CharField(max_length=1024)
    peer_id = models.CharField(max_length=255)
    start_pos = models.BigIntegerField()
    start_time_ms = models.BigIntegerField()
    source_bucket = models.CharField(max_length=255)
    source_region = models.CharField(max_length=64, blank=True)
    source_prefix = models.CharField(max_length=1024, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error_code = models.SmallIntegerField(default=1)
    error_message = models.CharField(max_length=1024, blank=True)
    image_path = models.CharField(max_length=1024, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.live_path} @ {self.start_pos} [{self.status}]"

    def image_location(self) -> tuple[str, str]:
        parts = [p for p in self.live_path.split("/") if p]
        recording = parts[2] if len(parts) > 2 else "recording"
        return self.peer_id, f"{self.peer_id}_{recording}_{self.start_pos}.jpg"
