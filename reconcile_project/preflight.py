"""Checks that the services a command needs are reachable, with a fix-it message instead of a traceback.

Usage: ``python -m reconcile_project.preflight redis [postgres]``. Exit status 1 when one is down.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)
POSTGRES_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def check_redis(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except Exception as exc:
        return f"Redis is not reachable at {url} ({exc}).\n  Start it with: {REDIS_START}\n  or set REDIS_URL."
    return None


def check_postgres(url: str) -> str | None:
    import psycopg

    parts = urlsplit(url)
    # Connect to the maintenance database: the test database itself is created by the test run.
    admin_url = parts._replace(path="/postgres").geturl()
    try:
        psycopg.connect(admin_url, connect_timeout=3).close()
    except Exception as exc:
        return (
            f"PostgreSQL is not reachable at {parts.hostname}:{parts.port or 5432} ({exc}).\n"
            f"  Start it with: {POSTGRES_START}\n  or set TEST_DATABASE_URL."
        )
    return None


def main(argv: list[str]) -> int:
    problems = []
    for name in argv or ["redis"]:
        if name == "redis":
            problems.append(check_redis(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")))
        elif name == "postgres":
            problems.append(
                check_postgres(os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/reconcile"))
            )
        else:
            print(f"unknown service {name!r} (choose redis, postgres)", file=sys.stderr)
            return 2
    failed = [p for p in problems if p]
    for problem in failed:
        print(problem, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
