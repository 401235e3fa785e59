from django.urls import path

from restore.apis import PutRestoreResultApi, RestoreCreateApi, RestoreDetailApi

urlpatterns = [
    path("resource/v1/i/restore", RestoreCreateApi.as_view(), name="restore-create"),
    path("resource/v1/i/restore/<str:task_id>", RestoreDetailApi.as_view(), name="restore-detail"),
    path("resource/v1/i/PutRestoreResult", PutRestoreResultApi.as_view(), name="restore-put-result"),
]
