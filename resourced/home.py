"""`/`: what a person who opens the service's address in a browser looks for, as links."""

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_GET

LINKS = (
    ("API docs (Swagger)", "api-docs"),
    ("OpenAPI schema", "schema"),
    ("Admin: exports, quotas, restores, images", "admin:index"),
    ("Health", "healthz"),
)


@require_GET
def home(request):
    links = [(label, reverse(name)) for label, name in LINKS]
    if settings.FLOWER_URL:
        links.append(("Flower: workers and tasks", settings.FLOWER_URL))
    items = format_html_join("\n", '<li><a href="{}">{}</a></li>', ((url, label) for label, url in links))
    page = format_html(
        "<!doctype html><html><head><meta charset='utf-8'><title>resourced</title></head><body>"
        "<h1>resourced</h1><p>The media resource service: clip exports, the image bed, archive restores. "
        "Clients call the API below with a SessionId.</p><ul>{}</ul></body></html>",
        items,
    )
    return HttpResponse(page)
