"""The admin index with an operator's dashboard above the list of apps.

Each app registers its panel (a function of the request and the time, answering a dict of numbers
and links, or None when the user may not see it): exports what waits and runs on each queue, what
failed in the last 24 hours and why, how much was exported today; restore what is still waiting.
``admin_index`` replaces the admin's index view (resourced/urls.py routes ``admin/`` to it); the
template resourced/templates/admin/index.html draws the numbers and then the usual index.
"""

from collections.abc import Callable
from urllib.parse import urlencode

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

Panel = Callable[..., dict | None]
_panels: dict[str, Panel] = {}


def register_panel(name: str, panel: Panel) -> None:
    """panel(request, now) -> the panel's context, merged into the dashboard's, or None."""
    _panels[name] = panel


def changelist(model_label: str, **filters) -> str:
    """The admin list of `model_label` ("app.model"), filtered."""
    url = reverse(f"admin:{model_label.replace('.', '_')}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def dashboard_context(request) -> dict:
    now = timezone.now()
    parts = [panel(request, now) for panel in _panels.values()]
    if not any(part is not None for part in parts):
        return {}
    context = {"now": now}
    for part in parts:
        context.update(part or {})
    return {"resourced_dashboard": context}


def admin_index(request, extra_context=None):
    """The admin site's index, with the dashboard."""
    context = dashboard_context(request)
    context.update(extra_context or {})
    return admin.site.index(request, extra_context=context)
