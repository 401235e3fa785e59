"""Archive restore jobs, their files, the signed callbacks they send, and callbacks received.

A ``RestoreJob`` is one ``POST /resource/v1/i/restore``; a ``RestoreFile`` one of its objects.
A ``Callback`` is one logical delivery to the client (type 0 or type 1, one delivery id, one
body); each try to deliver it is a ``CallbackDelivery`` row. ``ReceivedCallback`` rows are what
the reference receiver (``PutRestoreResult``) accepted.
"""


from django.db import models

from resourced.models import CallbackBase, CallbackDeliveryBase


class RestoreJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RESTORING = "restoring"
        COPYING = "copying"
        DONE = "done"

    CODE_SUCCESS = 0
    CODE_PARTIAL = 1  # at least one file did not succeed

    task_id = models.CharField(max_length=64)
    userid = models.CharField(max_length=255, db_index=True)
    # Source storage (from storage_info, or the service's default) and the destination of copies.
    bucket = models.CharField(max_length=255)
    region = models.CharField(max_length=64, blank=True)
    prefix = models.CharField(max_length=1024, blank=True)
    dest_bucket = models.CharField(max_length=255)
    dest_region = models.CharField(max_length=64, blank=True)
    dest_prefix = models.CharField(max_length=1024, blank=True)
    file_dir = models.CharField(max_length=1024)
    callback_url = models.CharField(max_length=2048)
    days = models.PositiveSmallIntegerField()
    tier = models.CharField(max_length=16)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    code = models.IntegerField(null=True, blank=True, help_text="0 when every file succeeded; set when done")
    message = models.CharField(max_length=255, blank=True)
    # The restore-watch loop: one chain of check tasks, identified by check_seq (a duplicate
    # delivery of an older check message finds a different number and stops).
    check_seq = models.PositiveIntegerField(default=0)
    checks = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    restore_deadline = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["userid", "task_id"], name="restore_job_unique_task_per_user")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.task_id} ({self.status})"


class RestoreFile(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"  # not looked at yet
        RESTORING = "restoring"  # a restore is in progress
        READY = "ready"  # readable: restored, or never archived
        DONE = "done"  # final: file_code says how it ended

    class Code(models.IntegerChoices):
        SUCCESS = 0
        NOT_FOUND = 1
        RESTORE_FAILED = 2
        COPY_FAILED = 3
        RESTORE_TIMED_OUT = 4

    job = models.ForeignKey(RestoreJob, on_delete=models.CASCADE, related_name="files")
    position = models.PositiveIntegerField()
    key = models.CharField(max_length=1024, help_text="as the client sent it, relative to the storage root folder")
    file_name = models.CharField(max_length=1024)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    file_code = models.PositiveSmallIntegerField(choices=Code.choices, null=True, blank=True)
    storage_class = models.CharField(max_length=32, blank=True)
    restore_requested = models.BooleanField(default=False, help_text="this job asked the storage to restore it")
    restore_requested_at = models.DateTimeField(null=True, blank=True)
    restored_at = models.DateTimeField(null=True, blank=True)
    copy_attempts = models.PositiveSmallIntegerField(default=0)
    copied_at = models.DateTimeField(null=True, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    dest_key = models.CharField(max_length=2048, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "position"]
        constraints = [models.UniqueConstraint(fields=["job", "position"], name="restore_file_unique_position")]

    def __str__(self) -> str:
        return self.key


class Callback(CallbackBase):
    """One PutRestoreResult message to the job's callback_url (type 0: network test, 1: the result),
    delivered (and retried) under one delivery id by resourced.callbacks.delivery."""

    class Type(models.IntegerChoices):
        NETWORK_TEST = 0
        RESULT = 1

    job = models.ForeignKey(RestoreJob, on_delete=models.CASCADE, related_name="callbacks")
    type = models.PositiveSmallIntegerField(choices=Type.choices)

    class Meta:
        ordering = ["job", "type", "created_at"]
        constraints = [models.UniqueConstraint(fields=["job", "type"], name="restore_callback_one_per_type")]

    def __str__(self) -> str:
        return f"type {self.type} of {self.job.task_id} ({self.state})"

    @property
    def subject(self) -> str:
        return f"type {self.type} of {self.job.task_id}"


class CallbackDelivery(CallbackDeliveryBase):
    """One attempt to deliver a Callback."""

    callback = models.ForeignKey(Callback, on_delete=models.CASCADE, related_name="deliveries")

    class Meta:
        ordering = ["callback", "attempt"]
        verbose_name_plural = "callback deliveries"
        constraints = [models.UniqueConstraint(fields=["callback", "attempt"], name="restore_delivery_unique_attempt")]


class ReceivedCallback(models.Model):
    """A callback accepted by the reference receiver; one row per delivery id."""

    delivery_id = models.CharField(max_length=64, unique=True)
    task_id = models.CharField(max_length=64, blank=True, db_index=True)
    type = models.IntegerField(null=True, blank=True)
    code = models.IntegerField(null=True, blank=True)
    body = models.JSONField()
    signed_at = models.DateTimeField()
    times_received = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(auto_now_add=True)
    last_received_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["received_at"]

    def __str__(self) -> str:
        return f"{self.delivery_id} type {self.type} of {self.task_id}"
