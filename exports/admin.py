from django.contrib import admin, messages

from exports.models import Export, Quota
from exports.services import export_cancel, export_retry
from resourced.errors import ServiceError


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("task_id", "status", "stage", "progress", "service_caller", "userid", "export_type",
                    "duration_ms", "lack_ms", "created_at", "total_time")
    list_filter = ("status", "stage", "service_caller", "export_type", "created_at")
    search_fields = ("task_id", "file_name", "live_path", "userid")
    exclude = ("dest_credentials",)
    readonly_fields = [f.name for f in Export._meta.fields if f.name != "dest_credentials"]
    actions = ["retry_exports", "cancel_exports"]

    @admin.display(description="total s")
    def total_time(self, obj):
        return None if obj.total_seconds is None else round(obj.total_seconds, 1)

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retry the selected failed or cancelled exports")
    def retry_exports(self, request, queryset):
        for export in queryset:
            try:
                export_retry(export=export)
            except ServiceError as exc:
                self.message_user(request, exc.message, messages.WARNING)

    @admin.action(description="Cancel the selected queued or running exports")
    def cancel_exports(self, request, queryset):
        for export in queryset:
            export_cancel(export=export)


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ("scope", "subject", "max_active_exports", "max_clip_ms", "max_minutes_per_day", "note")
    list_filter = ("scope",)
    search_fields = ("subject", "note")
