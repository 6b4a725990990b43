import os

from django.core.wsgi import get_wsgi_application

from reconcile_project.tracing import configure_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reconcile_project.settings")
# Before the application loads its middleware: the Django instrumentation adds its own (README "Tracing").
configure_tracing()
application = get_wsgi_application()
