"""What the database benchmarks share: a throw-away PostgreSQL database of their own, created if missing."""

from __future__ import annotations


def ensure_database(url: str) -> None:
    """Create the database ``url`` names (on the same server, through its ``postgres`` database) if absent."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
