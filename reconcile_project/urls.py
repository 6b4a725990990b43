from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from reconcile_project import debug_views, health, metrics
from reconciliation import dashboard
from reconciliation.api.exceptions import api_not_found, read_only

urlpatterns = [
    # The analysts' risk dashboard, and the admin index that sends analysts to it (README "Analysts' workspace").
    path("admin/risk/", dashboard.dashboard, name="risk-dashboard"),
    path("admin/", dashboard.index),
    path("admin/", admin.site.urls),
    # The REST API (README "API"); its OpenAPI document and Swagger UI.
    path("api/v1/", include("reconciliation.api.urls")),
    # Each with and without the slash (see reconciliation/api/urls.py); Swagger UI from static files.
    path("api/schema/", read_only(SpectacularAPIView.as_view()), name="api-schema"),
    path("api/schema", read_only(SpectacularAPIView.as_view())),
    path("api/docs/", read_only(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("api/docs", read_only(SpectacularSwaggerView.as_view(url_name="api-schema"))),
    # Any other /api/ path is the envelope's 404 for every method. Because it resolves, APPEND_SLASH
    # never answers an API path with a redirect (a client follows a 301 as a GET and drops the body).
    re_path(r"^api(?:/|$)", api_not_found),
    # The chat platforms' request URLs (README "Chat submissions"): signed by Discord or Slack, not API keys.
    path("chat/", include("chat.urls")),
    # Operations (docs/RUNBOOK.md): probes, Prometheus, staff-only debugging.
    path("health", health.health, name="health"),
    path("health/detailed", health.health_detailed, name="health-detailed"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("debug/circuit-breakers", debug_views.circuit_breakers, name="debug-circuit-breakers"),
    path("debug/worker-exceptions", debug_views.worker_exceptions, name="debug-worker-exceptions"),
]

# JSON error envelope for /api/ paths that never reach a DRF view; Django's pages elsewhere.
handler400 = "reconciliation.api.exceptions.handler400"
handler403 = "reconciliation.api.exceptions.handler403"
handler404 = "reconciliation.api.exceptions.handler404"
handler500 = "reconciliation.api.exceptions.handler500"
