from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from resourced.dashboard import admin_index
from resourced.health import healthz
from resourced.home import home
from resourced.metrics import metrics_view

handler400 = "resourced.errors.json_400"
handler403 = "resourced.errors.json_403"
handler404 = "resourced.errors.json_404"
handler500 = "resourced.errors.json_500"

urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    # the admin index with the operator's dashboard; every other admin page as Django has it
    path("admin/", admin.site.admin_view(admin_index), name="admin-dashboard"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include("exports.urls")),
    path("", include("restore.urls")),
    path("", include("imgbed.urls")),
]
