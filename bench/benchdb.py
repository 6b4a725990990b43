"""What the database benchmarks share: settings of their own and a throw-away PostgreSQL database."""

from __future__ import annotations

import os


def ensure_database(url: str) -> None:
    """Create the database ``url`` names (on the same server, through its ``postgres`` database) if absent."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def bench_environment(*, database: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Point this process (and the processes it starts) at the bench's own database and Redis, as in
    development with quiet logs and no broker of a running stack; create the database. Call before
    ``django.setup()``. ``BENCH_DATABASE_URL`` overrides the database."""
    env = {
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{database}"),
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "reconcile_project.settings",
        "DJANGO_ENV": "development",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "LOG_FILE": "",
        **extra,
    }
    os.environ.update(env)
    os.environ.pop("CELERY_BROKER_URL", None)
    ensure_database(env["DATABASE_URL"])
    return env
