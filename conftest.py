"""Test-run environment: PostgreSQL from TEST_DATABASE_URL, quiet console logs.

Set before Django reads its settings (pytest-django configures Django after the root conftest loads).
"""

import os

os.environ.setdefault("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/reconcile")
os.environ["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
os.environ.setdefault("DJANGO_ENV", "test")
