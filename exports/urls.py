from django.urls import path

from exports.apis import ExportCreateApi, ExportCreateAtRootApi, ExportDetailApi, ThumbnailApi

urlpatterns = [
    path("resource/v1/i/export-to-s3dir", ExportCreateApi.as_view(), name="export-create"),
    path("export-to-s3dir", ExportCreateAtRootApi.as_view(), name="export-create-seed"),
    path("resource/v1/i/export-to-s3dir/<str:task_id>", ExportDetailApi.as_view(), name="export-detail"),
    path("resource/v1/i/getthumbnail", ThumbnailApi.as_view(), name="getthumbnail"),
]
