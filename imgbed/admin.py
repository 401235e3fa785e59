from django.contrib import admin
from django.utils.html import format_html

from imgbed.models import Image
from imgbed.services import image_delete, image_url


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("thumbnail", "path", "filename", "content_type", "width", "height", "size", "uploader", "updated")
    list_display_links = ("thumbnail", "filename")
    list_filter = ("content_type",)
    search_fields = ("path", "filename", "uploader")
    date_hierarchy = "created"
    readonly_fields = ("preview", "url", "path", "filename", "size", "content_type", "width", "height",
                       "sha256", "uploader", "created", "updated")
    fields = readonly_fields

    @admin.display(description="URL")
    def url(self, obj: Image) -> str:
        return image_url(path=obj.path, filename=obj.filename)

    @admin.display(description="")
    def thumbnail(self, obj: Image) -> str:
        return format_html('<img src="{}" alt="" loading="lazy" style="max-height:64px;max-width:128px">', self.url(obj))

    @admin.display(description="Preview")
    def preview(self, obj: Image) -> str:
        return format_html('<a href="{0}"><img src="{0}" alt="" style="max-height:480px;max-width:100%"></a>', self.url(obj))

    def has_add_permission(self, request) -> bool:  # images come through the API or an export
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    # Deleting here removes the stored object too, through the same service as the API.
    def delete_model(self, request, obj: Image) -> None:
        image_delete(path=obj.path, filename=obj.filename)

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:
            image_delete(path=obj.path, filename=obj.filename)
