"""Image bed routes. resourced/urls.py includes this last, at the root: the image route only
matches paths whose last segment has an image extension, so it shadows nothing else."""

import re

from django.conf import settings
from django.urls import path, re_path

from imgbed.apis import ImageDeleteApi, ImageListApi, ImageServeApi, ImageUploadApi
from imgbed.paths import url_path_prefix

_prefix = re.escape(url_path_prefix(settings.IMGBED_URL_PREFIX).lstrip("/"))

urlpatterns = [
    # (?s:.+): a path with a newline or another control character reaches the view, which
    # refuses it with the endpoint's own 400, instead of falling through to a generic 404.
    re_path(r"^api/imgbed/v1/upload/(?P<path>(?s:.+))$", ImageUploadApi.as_view(), name="imgbed-upload"),
    path("api/imgbed/v1/delete", ImageDeleteApi.as_view(), name="imgbed-delete"),
    re_path(r"^api/imgbed/v1/list/(?P<path>(?s:.+))$", ImageListApi.as_view(), name="imgbed-list"),
    re_path(
        rf"^{_prefix}(?P<path>.+)/(?P<filename>[^/]+\.(?i:jpe?g|png|gif|webp))$",
        ImageServeApi.as_view(),
        name="imgbed-image",
    ),
]
