"""Staff's view of exports and quotas.

The export history is read-only: rows are written by the API and the pipeline; staff filter,
search, look at the clip (thumbnail, download link), and retry or cancel. The destination
credentials (``dest_credentials``, encrypted while an export runs) are never part of a form, a
column, a page or the history.
"""

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from exports.errors import MEANINGS
from exports.models import Export, Quota, Thumbnail
from exports.services import export_cancel, export_retry
from exports.stages import STAGE_NAMES
from resourced.errors import ServiceError

SECRET_FIELDS = ("dest_credentials",)


class InputFilter(admin.SimpleListFilter):
    """A list filter with a text box (exact match), for fields with too many values to list."""

    template = "admin/resourced/input_filter.html"

    def lookups(self, request, model_admin):
        return ()

    def has_output(self) -> bool:
        return True

    def choices(self, changelist):
        # one "choice": the query string without this filter, and every other parameter to keep
        # (filters, search, ordering) as hidden fields of the text box's form
        keep = [(key, value) for key, values in changelist.filter_params.items() if key != self.parameter_name
                for value in values]
        yield {
            "selected": self.value() is not None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
            "keep": keep,
            "value": self.value() or "",
        }


class UserIdFilter(InputFilter):
    title = "userid"
    parameter_name = "userid"

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        return queryset.filter(userid=value) if value else queryset


class ErrorCodeFilter(admin.SimpleListFilter):
    title = "ErrorCode"
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        return [(str(int(code)), f"{int(code)} {meaning}") for code, meaning in MEANINGS.items()]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        try:
            return queryset.filter(error_code=int(value))
        except ValueError:
            return queryset.none()


def download_url(export: Export) -> str:
    """A presigned GET of a ready clip, signed with the service's own credentials."""
    if export.status != Export.Status.READY or not export.video_key:
        return ""
    from resourced.s3 import S3Location

    client = S3Location(bucket=export.dest_bucket, region=export.dest_region).client()
    name = export.video_key.rsplit("/", 1)[-1].replace('"', "")
    return client.generate_presigned_url(
        "get_object",
        Params={"Bucket": export.dest_bucket, "Key": export.video_key,
                "ResponseContentDisposition": f'attachment; filename="{name}"'},
        ExpiresIn=settings.ADMIN_DOWNLOAD_URL_SECONDS,
    )


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("thumbnail", "task_id", "status", "stage", "progress", "error_code", "service_caller", "userid",
                    "export_type", "clip_seconds", "lack_length", "stage_timings", "total_time", "created_at",
                    "download")
    list_display_links = ("thumbnail", "task_id")
    list_filter = ("status", "stage", ErrorCodeFilter, ("service_caller", admin.AllValuesFieldListFilter), UserIdFilter,
                   "export_type", "export_format", "created_at", "finished_at")
    search_fields = ("task_id", "file_name", "live_path", "userid")
    search_help_text = "TaskId, FileName, LivePath or userid (part of it)"
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False
    exclude = SECRET_FIELDS
    fieldsets = (
        (None, {"fields": ("preview", "download_link", "task_id", "status", "stage", "progress", "error_code",
                           "error_message")}),
        ("Request", {"fields": ("service_caller", "userid", "live_path", "peer_id", "file_name", "export_type",
                                "export_format", "start_pos", "start_time_ms", "duration_ms", "idempotency_key")}),
        ("Storages", {"fields": ("source_bucket", "source_region", "source_prefix", "dest_bucket", "dest_region",
                                 "own_credentials")}),
        ("Result", {"fields": ("video_path", "video_key", "image_path", "output_bytes", "output_duration_ms",
                               "lack_ms", "segments_missing", "bytes_needed", "bytes_downloaded", "origin_ms",
                               "clip_start_ms", "lead_ms")}),
        ("Timing", {"fields": ("timing_table", "total_time", "created_at", "started_at", "finished_at", "updated_at",
                               "heartbeat_at", "host", "attempts", "restarts", "timings", "step_hosts")}),
    )
    readonly_fields = [f.name for f in Export._meta.fields if f.name not in (*SECRET_FIELDS, "id")] + [
        "preview", "download_link", "timing_table", "total_time", "own_credentials",
    ]
    actions = ["retry_exports", "cancel_exports"]
    change_form_template = "admin/exports/export/change_form.html"

    # --- columns ---

    @admin.display(description="")
    def thumbnail(self, obj: Export) -> str:
        if not obj.image_path:
            return "–"
        return format_html('<img src="{}" alt="first frame" loading="lazy" style="max-height:48px;max-width:96px">',
                           obj.image_path)

    @admin.display(description="clip (s)", ordering="duration_ms")
    def clip_seconds(self, obj: Export) -> float:
        return round(obj.duration_ms / 1000, 3)

    @admin.display(description="LackLength (ms)", ordering="lack_ms")
    def lack_length(self, obj: Export) -> int:
        return obj.lack_ms

    @admin.display(description="stage timings (s)")
    def stage_timings(self, obj: Export) -> str:
        timings = obj.timings or {}
        parts = [(stage, f"{timings[stage]:.2f}") for stage in STAGE_NAMES if isinstance(timings.get(stage), (int, float))]
        if not parts:
            return "–"
        return format_html_join(" · ", '<span title="{0}">{0} {1}</span>', parts)

    @admin.display(description="total (s)")
    def total_time(self, obj: Export):
        return None if obj.total_seconds is None else round(obj.total_seconds, 1)

    @admin.display(description="clip")
    def download(self, obj: Export) -> str:
        url = download_url(obj)
        return format_html('<a href="{}" class="download-clip">download</a>', url) if url else "–"

    # --- detail ---

    @admin.display(description="first frame")
    def preview(self, obj: Export) -> str:
        if not obj.image_path:
            return "–"
        return format_html('<a href="{0}"><img src="{0}" alt="first frame" id="export-preview" '
                           'style="max-height:240px;max-width:100%"></a>', obj.image_path)

    @admin.display(description="download")
    def download_link(self, obj: Export) -> str:
        url = download_url(obj)
        if not url:
            return "the clip can be downloaded when the export is ready"
        minutes = settings.ADMIN_DOWNLOAD_URL_SECONDS // 60
        return format_html('<a href="{}" id="export-download">{}</a> (link valid {} min)', url,
                           obj.video_key.rsplit("/", 1)[-1], minutes)

    @admin.display(description="stages")
    def timing_table(self, obj: Export) -> str:
        timings, hosts = obj.timings or {}, obj.step_hosts or {}
        rows = [(stage, timings.get(stage, "–"), hosts.get(stage, "")) for stage in STAGE_NAMES
                if stage in timings or stage in hosts]
        if not rows:
            return "–"
        return format_html('<table class="stage-timings"><tr><th>stage</th><th>seconds</th><th>host</th></tr>{}</table>',
                           format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows))

    @admin.display(description="destination credentials")
    def own_credentials(self, obj: Export) -> str:
        # whether the client gave its own ExportS3Key, never the key
        if obj.dest_credentials:
            return "the client's own (stored encrypted until the export ends)"
        return "the service's own" if obj.is_active else "the service's own, or the client's (erased)"

    def get_fieldsets(self, request, obj=None):
        # a field added to Export later shows up too (never a secret one)
        listed = {name for _title, options in self.fieldsets for name in options["fields"]}
        rest = tuple(name for name in self.readonly_fields if name not in listed)
        return self.fieldsets + ((("More", {"fields": rest}),) if rest else ())

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_active:
            return False  # a worker is on it: cancel it first
        return super().has_delete_permission(request, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # every field is read-only: no save buttons; Retry and Cancel are the changes staff make
        context = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}
        context.update(extra_context or {})
        return super().change_view(request, object_id, form_url, extra_context=context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            can_change = self.has_change_permission(request, obj)
            context["can_retry"] = can_change and obj.status in (Export.Status.FAILED, Export.Status.CANCELLED)
            context["can_cancel"] = can_change and obj.is_active
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    # --- retry and cancel ---

    def get_urls(self):
        urls = super().get_urls()
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<path:object_id>/retry/", self.admin_site.admin_view(self.retry_view), name="%s_%s_retry" % info),
            path("<path:object_id>/cancel/", self.admin_site.admin_view(self.cancel_view), name="%s_%s_cancel" % info),
        ] + urls

    def _one(self, request, object_id) -> Export:
        export = get_object_or_404(Export, pk=object_id)
        if not self.has_change_permission(request, export):
            raise PermissionDenied
        return export

    def retry_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        export = self._one(request, object_id)
        self._retry(request, export)
        return HttpResponseRedirect(reverse("admin:exports_export_change", args=[export.pk]))

    def cancel_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        export = self._one(request, object_id)
        self._cancel(request, export)
        return HttpResponseRedirect(reverse("admin:exports_export_change", args=[export.pk]))

    def _retry(self, request, export: Export) -> bool:
        try:
            export_retry(export=export)
        except ServiceError as exc:
            self.message_user(request, f"{export.task_id}: {exc.message}", messages.WARNING)
            return False
        self.log_change(request, export, "Retried")
        self.message_user(request, f"{export.task_id} queued again (restart {export.restarts})", messages.SUCCESS)
        return True

    def _cancel(self, request, export: Export) -> bool:
        if not export.is_active:
            self.message_user(request, f"{export.task_id} is {export.status}; only queued or running exports are "
                                       "cancelled", messages.WARNING)
            return False
        export_cancel(export=export)
        self.log_change(request, export, "Cancelled")
        self.message_user(request, f"{export.task_id} cancelled", messages.SUCCESS)
        return True

    @admin.action(description="Retry the selected failed or cancelled exports", permissions=["change"])
    def retry_exports(self, request, queryset):
        for export in queryset:
            self._retry(request, export)

    @admin.action(description="Cancel the selected queued or running exports", permissions=["change"])
    def cancel_exports(self, request, queryset):
        for export in queryset:
            self._cancel(request, export)


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ("scope", "subject", "max_active_exports", "max_clip_ms", "max_minutes_per_day", "note")
    list_filter = ("scope",)
    search_fields = ("subject", "note")


@admin.register(Thumbnail)
class ThumbnailAdmin(admin.ModelAdmin):
    list_display = ("task_id", "status", "error_code", "live_path", "start_pos", "preview", "created_at")
    list_filter = ("status", "error_code", "created_at")
    search_fields = ("task_id", "live_path", "peer_id")
    readonly_fields = [f.name for f in Thumbnail._meta.fields] + ["preview"]

    @admin.display(description="frame")
    def preview(self, obj):
        if not obj.image_path:
            return "—"
        return format_html('<img src="{}" style="max-height:60px">', obj.image_path)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
