"""Staff's view of exports and quotas.

The export history is read-only: rows are written by the API and the pipeline; staff filter,
search, look at the clip (thumbnail, download link, an MP4 played inline), and retry or cancel;
nothing is saved or deleted from its pages. Queued and running exports show a progress bar with
their stage and ETA that follows the row by itself (exports/static/exports/admin/export_state.js
polls ``progress_view``); waiting ones show what they wait on and their next check; failed and
cancelled ones the stage they ended in, and no Progress. The destination credentials
(``dest_credentials``, encrypted while an export runs) are never part of a form, a column, a page
or the history.
"""

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join

from exports.errors import MEANINGS
from exports.models import (
    Export,
    ExportCallback,
    ExportCallbackDelivery,
    Quota,
    Thumbnail,
)
from exports.selectors import (
    export_failed_stage,
    export_state,
    export_states,
    quota_for,
    quota_usage_today,
)
from exports.services import export_callback_redeliver, export_cancel, export_retry
from exports.stages import STAGE_NAMES
from resourced.callbacks.admin import CallbackAdminBase, DeliveryInline
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


def download_url(export: Export, *, inline: bool = False) -> str:
    """A presigned GET of a ready clip, signed with the service's own credentials: a download
    (attachment), or for `inline` the clip as it is stored, for a <video> to play."""
    if export.status != Export.Status.READY or not export.video_key:
        return ""
    from resourced.s3 import S3Location

    client = S3Location(bucket=export.dest_bucket, region=export.dest_region).client()
    name = export.video_key.rsplit("/", 1)[-1].replace('"', "")
    params = {"Bucket": export.dest_bucket, "Key": export.video_key}
    if not inline:
        params["ResponseContentDisposition"] = f'attachment; filename="{name}"'
    return client.generate_presigned_url("get_object", Params=params, ExpiresIn=settings.ADMIN_DOWNLOAD_URL_SECONDS)


def plays_inline(export: Export) -> bool:
    """Whether browsers play the clip in a <video>: MP4 (Chromium and Firefox do not play MPEG-TS)."""
    return export.status == Export.Status.READY and export.video_key.lower().endswith(".mp4")


# --- an export's state: list column, detail field and progress endpoint draw it the same way ------

def when(moment) -> str:
    """A date and time with seconds, in the site's format (resourced/formats)."""
    return formats.localize(timezone.localtime(moment)) if moment else "–"


def duration_text(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def stage_label(stage: str) -> str:
    """The Stage as the API names it, or its longer label where it has one."""
    try:
        label = str(Export.Stage(stage).label)
    except ValueError:
        return stage
    return label if label.lower() != stage else stage


def state_html(state: dict) -> str:
    """The inside of an export's state cell (see export_state)."""
    status = state["status"]
    if status in (Export.Status.QUEUED, Export.Status.RUNNING):
        eta = state["eta_seconds"]
        if status == Export.Status.QUEUED:
            eta_text = "waiting for a worker"
        else:
            eta_text = f"ETA {duration_text(eta)}" if eta is not None else "ETA –"
        return format_html(
            '<div class="export-bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="{0}">'
            '<div class="export-bar-fill" style="width: {0}%"></div></div>'
            '<span class="export-stage">{1}</span> <span class="export-percent">{0} %</span> '
            '<span class="export-eta">{2}</span>',
            state["progress"], stage_label(state["stage"]), eta_text)
    if status == Export.Status.WAITING:
        # restoring: how many archived objects; waiting: the label says it (the live edge)
        on = state["waiting_on"]
        what = f"{on} archived object{'s' if on != 1 else ''} being restored" if isinstance(on, int) else ""
        deadline = state["wait_deadline"]
        return format_html(
            '<span class="export-stage export-waiting">{}</span> <span class="export-waiting-on">{}</span><br>'
            '<span class="export-next-check">next check {}</span>{}',
            stage_label(state["stage"]), what, when(state["next_check_at"]),
            format_html('<br><span class="export-next-check" title="{}">until {}</span>',
                        "then it fails" if isinstance(on, int) else "then it exports what is recorded",
                        when(deadline)) if deadline else "")
    total = state["total_seconds"]
    took = format_html(' <span class="export-total" title="from start to end">in {} s</span>', round(total, 1)) \
        if total is not None else ""
    if status == Export.Status.READY:
        return format_html('<span class="export-ready">✓ ready</span>{}', took)
    code = state["error_code"]
    meaning = MEANINGS.get(code, "") if code is not None else ""
    return format_html(
        '<span class="export-ended export-{0}">✗ {0} in <strong class="export-failed-stage">{1}</strong></span>'
        '<br><span class="export-error-code" title="{3}">ErrorCode {2}</span>{4}',
        status, state["ended_in"], code, meaning, took)


# shown through `state` on the change page: a failed export's Progress is never shown
HIDDEN_FIELDS = ("progress",)
PROGRESS_MAX_IDS = 200  # one changelist page is 50


def json_time(moment) -> str | None:
    return moment.isoformat() if moment else None


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    # 7 columns with the checkbox: a laptop screen shows them beside the navigation and the filters
    # without scrolling sideways; stage timings, total time and the rest are on the change page
    list_display = ("thumbnail", "task_id", "state", "who", "clip", "created")
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
        (None, {"fields": ("preview", "download_link", "task_id", "status", "state", "error_code", "error_message")}),
        ("Request", {"fields": ("service_caller", "userid", "live_path", "peer_id", "file_name", "export_type",
                                "export_format", "cut_mode", "restore_tier", "start_pos", "start_time_ms",
                                "duration_ms", "idempotency_key")}),
        ("Waiting", {"fields": ("next_check_at", "wait_deadline", "waiting_on"), "classes": ("collapse",)}),
        ("Storages", {"fields": ("source_bucket", "source_region", "source_prefix", "dest_bucket", "dest_region",
                                 "own_credentials")}),
        ("Result", {"fields": ("video_path", "video_key", "image_path", "output_bytes", "output_duration_ms",
                               "lack_ms", "segments_missing", "bytes_needed", "bytes_downloaded", "origin_ms",
                               "clip_start_ms", "lead_ms")}),
        ("Timing", {"fields": ("timing_table", "stage", "total_time", "created_at", "started_at", "finished_at",
                               "updated_at", "heartbeat_at", "host", "attempts", "restarts", "timings", "step_hosts")}),
    )
    readonly_fields = [f.name for f in Export._meta.fields if f.name not in (*SECRET_FIELDS, *HIDDEN_FIELDS, "id")] + [
        "preview", "download_link", "state", "timing_table", "total_time", "own_credentials",
    ]
    actions = ["retry_exports", "cancel_exports"]
    change_form_template = "admin/exports/export/change_form.html"

    class Media:
        css = {"all": ("exports/admin/export_state.css",)}
        js = ("exports/admin/export_state.js",)

    # --- columns ---

    @admin.display(description="")
    def thumbnail(self, obj: Export) -> str:
        if not obj.image_path:
            return "–"
        return format_html('<img src="{}" alt="first frame" loading="lazy" style="max-height:36px;max-width:64px">',
                           obj.image_path)

    @admin.display(description="caller / userid", ordering="userid")
    def who(self, obj: Export) -> str:
        return format_html('<span class="quiet">{}</span><br>{}', obj.service_caller, obj.userid or "–")

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Export) -> str:
        moment = timezone.localtime(obj.created_at)
        return format_html('<span class="nowrap">{}</span><br><span class="nowrap">{}</span>',
                           formats.date_format(moment, "DATE_FORMAT"), formats.time_format(moment, "TIME_FORMAT"))

    @admin.display(description="state", ordering="status")
    def state(self, obj: Export) -> str:
        """Status, stage, progress bar and ETA (queued, running), what it waits on and the next
        check (waiting), or the stage it failed in; export_state.js keeps it current."""
        state = export_state(obj)
        return format_html(
            '<div class="export-state" data-export-state data-export-id="{}" data-status="{}" data-progress-url="{}" '
            'data-poll-ms="{}">{}</div>',
            obj.pk, state["status"], reverse("admin:exports_export_progress"), settings.EXPORT_POLL_MS,
            state_html(state))

    @admin.display(description="clip", ordering="duration_ms")
    def clip(self, obj: Export) -> str:
        """Requested length, type and container, LackLength, and the download of a ready clip."""
        url = download_url(obj)
        return format_html(
            '<span class="clip-seconds" title="Duration (s)">{} s</span> <span class="quiet">{} {}</span>{}{}',
            f"{obj.duration_ms / 1000:g}", obj.get_export_type_display(), obj.export_format,
            format_html('<br><span class="clip-lack" title="LackLength">lack {} ms</span>', obj.lack_ms)
            if obj.lack_ms else "",
            format_html('<br><a href="{}" class="download-clip">download</a>', url) if url else "")

    @admin.display(description="total (s)")
    def total_time(self, obj: Export):
        return None if obj.total_seconds is None else round(obj.total_seconds, 1)

    # --- detail ---

    @admin.display(description="preview")
    def preview(self, obj: Export) -> str:
        """An MP4 clip plays here (a presigned GET, the first frame as its poster); other clips
        show their first frame."""
        if plays_inline(obj):
            return format_html('<video id="export-video" src="{}" poster="{}" controls preload="metadata" playsinline '
                               'style="max-height:360px;max-width:100%"></video>', download_url(obj, inline=True),
                               obj.image_path)
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
        """Seconds and host of each stage; the stage a failed or cancelled export ended in is marked."""
        timings, hosts, attempts = obj.timings or {}, obj.step_hosts or {}, obj.attempts or {}
        ended_in = export_failed_stage(obj) if obj.status in (Export.Status.FAILED, Export.Status.CANCELLED) else ""
        rows = []
        for stage in (Export.Stage.RESTORING, Export.Stage.WAITING, *STAGE_NAMES):
            if stage in timings or stage in hosts or stage in attempts or stage == ended_in:
                mark = f"✗ {obj.status} here" if stage == ended_in else ""
                rows.append(("stage-ended" if mark else "stage", stage, timings.get(stage, "–"), hosts.get(stage, ""),
                             attempts.get(stage, ""), mark))
        if not rows:
            return "–"
        return format_html(
            '<table class="stage-timings"><tr><th>stage</th><th>seconds</th><th>host</th><th>attempts</th><th></th>'
            '</tr>{}</table>',
            format_html_join("", '<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>', rows))

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
        return False  # the history stays whole; Cancel stops an export

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # every field is read-only: no save buttons, and nothing to post (a save would write the
        # whole row under a running worker); Retry and Cancel are the changes staff make
        if request.method == "POST":
            return HttpResponseNotAllowed(["GET"])
        context = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}
        context.update(extra_context or {})
        return super().change_view(request, object_id, form_url, extra_context=context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            can_change = self.has_change_permission(request, obj)
            context["can_retry"] = can_change and obj.status in (Export.Status.FAILED, Export.Status.CANCELLED)
            context["can_cancel"] = can_change and obj.is_active
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    # --- progress, retry and cancel ---

    def get_urls(self):
        urls = super().get_urls()
        info = self.opts.app_label, self.opts.model_name
        return [
            path("progress/", self.admin_site.admin_view(self.progress_view), name="%s_%s_progress" % info),
            path("<path:object_id>/retry/", self.admin_site.admin_view(self.retry_view), name="%s_%s_retry" % info),
            path("<path:object_id>/cancel/", self.admin_site.admin_view(self.cancel_view), name="%s_%s_cancel" % info),
        ] + urls

    def progress_view(self, request):
        """GET ?id=1&id=2…: the state of those exports (at most PROGRESS_MAX_IDS), for the page's
        state cells: status, stage, progress (none for a failed export), ETA, next check, failed
        stage, and the cell's HTML. Staff with the view permission only."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        ids = [int(value) for value in request.GET.getlist("id") if value.isdigit()][:PROGRESS_MAX_IDS]
        answer = []
        for state in export_states(ids=ids):
            answer.append(dict(state, html=state_html(state), next_check_at=json_time(state["next_check_at"]),
                               wait_deadline=json_time(state["wait_deadline"])))
        return JsonResponse({"exports": answer, "poll_ms": settings.EXPORT_POLL_MS})

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
    list_display = ("scope", "subject", "max_active_exports", "max_waiting", "max_clip_ms", "max_minutes_per_day",
                    "note")
    list_filter = ("scope",)
    search_fields = ("subject", "note")
    change_list_template = "admin/exports/quota/change_list.html"

    def changelist_view(self, request, extra_context=None):
        """Above the rows: the quota a request no row names gets (the default row, or the built-in
        default when there is none) and today's usage of every user against the quota that applies."""
        default = quota_for(userid="", service_caller="")
        context = {"quota_default": default, "quota_default_builtin": default.pk is None,
                   "quota_usage": quota_usage_today(), "quota_day_start": timezone.now().replace(
                       hour=0, minute=0, second=0, microsecond=0)}
        context.update(extra_context or {})
        return super().changelist_view(request, extra_context=context)


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

    def has_delete_permission(self, request, obj=None):
        return False  # the history of getthumbnail requests is read-only


class ExportCallbackDeliveryInline(DeliveryInline):
    model = ExportCallbackDelivery


@admin.register(ExportCallback)
class ExportCallbackAdmin(CallbackAdminBase):
    """CallbackUrl deliveries: every attempt, and redelivery (resourced/callbacks)."""

    list_display = ("delivery_id", "export", "state", "attempts", "next_attempt_at", "delivered_at", "created_at")
    list_filter = ("state",)
    search_fields = ("delivery_id", "export__task_id", "url")
    inlines = [ExportCallbackDeliveryInline]

    def redeliver_one(self, callback) -> None:
        export_callback_redeliver(callback=callback)
