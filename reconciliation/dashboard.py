"""The risk dashboard: the admin's landing page for analysts (README "Analysts' workspace").

Figures from :func:`alerts.selectors.risk_dashboard` (SQL aggregates); the two Redis figures, breaker states
and queue depth, are read here and shown as unknown when Redis does not answer, so the page still renders
during the outage an analyst most needs it for.
"""

from __future__ import annotations

import logging

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import RedisError

from alerts.selectors import risk_dashboard
from reconcile_project.metrics import breaker_states, queue_depths
from reconciliation.roles import ANALYST_GROUP

logger = logging.getLogger("reconciliation.dashboard")


def _dashboard(request: HttpRequest) -> HttpResponse:
    try:
        queues: dict[str, int] | None = queue_depths()
    except RedisError as exc:
        logger.warning("Queue depth unavailable on the dashboard", extra={"error": type(exc).__name__})
        queues = None
    data = risk_dashboard(now=timezone.now(), breaker_states=breaker_states() or {}, queues=queues)
    context = {
        **admin.site.each_context(request),
        "title": "Risk dashboard",
        "d": data,
    }
    return TemplateResponse(request, "admin/risk_dashboard.html", context)


def _index(request: HttpRequest) -> HttpResponse:
    """The admin index; an analyst lands on the dashboard instead (``?models`` shows the index)."""
    user = request.user
    if "models" not in request.GET and user.groups.filter(name=ANALYST_GROUP).exists():
        return HttpResponseRedirect(reverse("risk-dashboard"))
    return admin.site.index(request)


# Behind the admin's own login and staff check.
dashboard = admin.site.admin_view(_dashboard)
index = admin.site.admin_view(_index)
# "View site" in the admin's header goes to the dashboard (the project has no public site).
admin.site.site_url = "/admin/risk/"
# The lists get the whole width (their columns fit 1400 px beside the filters); the dashboard and the
# index link every page the sidebar would.
admin.site.enable_nav_sidebar = False
