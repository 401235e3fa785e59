"""The admin of callback rows, shared by every app that calls clients back: the attempts of a
callback inline, read-only pages, and the redeliver action (same delivery id, a fresh retry
window). An app's ModelAdmin sets the model, its columns and `redeliver_one`."""

from django.contrib import admin, messages

DELIVERY_FIELDS = ("attempt", "started_at", "outcome", "http_status", "duration_ms", "address", "error",
                   "response_excerpt")


class DeliveryInline(admin.TabularInline):
    """The attempts of one callback (set `model` to the app's CallbackDeliveryBase subclass)."""

    extra = 0
    can_delete = False
    fields = DELIVERY_FIELDS
    readonly_fields = DELIVERY_FIELDS

    def has_add_permission(self, request, obj=None):
        return False


class CallbackAdminBase(admin.ModelAdmin):
    """Read-only callback pages with the redeliver action; `redeliver_one(callback)` is the app's
    service that makes it pending again and sends it."""

    actions = ["redeliver"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the delivery history stays

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # read-only history: no Save buttons (the redeliver action is on the list)
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False,
                         "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, extra_context)

    def redeliver_one(self, callback) -> None:
        raise NotImplementedError

    @admin.action(description="Redeliver (same delivery id, a fresh retry window)", permissions=["change"])
    def redeliver(self, request, queryset):
        for callback in queryset:
            self.redeliver_one(callback)
        messages.info(request, f"{queryset.count()} callback(s) queued for delivery")
