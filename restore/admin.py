from django.contrib import admin

from resourced.callbacks.admin import CallbackAdminBase, DeliveryInline
from restore.models import (
    Callback,
    CallbackDelivery,
    ReceivedCallback,
    RestoreFile,
    RestoreJob,
)
from restore.services import callback_redeliver


class RestoreFileInline(admin.TabularInline):
    model = RestoreFile
    extra = 0
    can_delete = False
    fields = ("position", "key", "status", "file_code", "storage_class", "restore_requested", "restored_at",
              "copy_attempts", "dest_key", "error")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class CallbackInline(admin.TabularInline):
    model = Callback
    extra = 0
    can_delete = False
    fields = ("type", "delivery_id", "state", "attempts", "next_attempt_at", "delivered_at", "last_error")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RestoreJob)
class RestoreJobAdmin(admin.ModelAdmin):
    list_display = ("task_id", "userid", "status", "code", "message", "bucket", "file_dir", "created_at", "finished_at")
    list_filter = ("status", "code")
    search_fields = ("task_id", "userid", "file_dir", "callback_url")
    readonly_fields = [f.name for f in RestoreJob._meta.fields]
    inlines = [RestoreFileInline, CallbackInline]

    def has_add_permission(self, request):
        return False


class CallbackDeliveryInline(DeliveryInline):
    model = CallbackDelivery


@admin.register(Callback)
class CallbackAdmin(CallbackAdminBase):
    list_display = ("delivery_id", "job", "type", "state", "attempts", "next_attempt_at", "delivered_at", "created_at")
    list_filter = ("state", "type")
    search_fields = ("delivery_id", "job__task_id", "url")
    inlines = [CallbackDeliveryInline]

    def redeliver_one(self, callback) -> None:
        callback_redeliver(callback=callback)


@admin.register(CallbackDelivery)
class CallbackDeliveryAdmin(admin.ModelAdmin):
    list_display = ("delivery_id", "attempt", "outcome", "http_status", "duration_ms", "started_at", "error")
    list_filter = ("outcome",)
    search_fields = ("delivery_id", "callback__job__task_id")
    readonly_fields = [f.name for f in CallbackDelivery._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(ReceivedCallback)
class ReceivedCallbackAdmin(admin.ModelAdmin):
    list_display = ("delivery_id", "task_id", "type", "code", "times_received", "signed_at", "received_at")
    list_filter = ("type", "code")
    search_fields = ("delivery_id", "task_id")
    readonly_fields = [f.name for f in ReceivedCallback._meta.fields]

    def has_add_permission(self, request):
        return False
