from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from resourced.health import healthz

handler400 = "resourced.errors.json_400"
handler403 = "resourced.errors.json_403"
handler404 = "resourced.errors.json_404"
handler500 = "resourced.errors.json_500"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include("exports.urls")),
    path("", include("restore.urls")),
    path("", include("imgbed.urls")),
]
