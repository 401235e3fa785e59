from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.utils import timezone

from resourced.models import ApiSession, hash_session_id, new_session_id


@admin.register(ApiSession)
class ApiSessionAdmin(admin.ModelAdmin):
    list_display = ("key_prefix", "userid", "created_at", "expires_at", "note")
    search_fields = ("userid", "note", "key_prefix")
    readonly_fields = ("key_prefix", "created_at")
    fields = ("userid", "expires_at", "note", "key_prefix", "created_at")
    list_filter = ("expires_at",)

    def get_changeform_initial_data(self, request):
        return {"expires_at": timezone.now() + timedelta(seconds=settings.SESSION_DEFAULT_TTL)}

    def save_model(self, request, obj, form, change):
        if not change:
            session_id = new_session_id()
            obj.key_hash = hash_session_id(session_id)
            obj.key_prefix = session_id[:6]
            super().save_model(request, obj, form, change)
            messages.warning(request, f"SessionId {session_id}: copy it now, it is not shown again.")
            return
        super().save_model(request, obj, form, change)
