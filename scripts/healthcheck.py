"""The container's health check: ``GET /health`` of the local gunicorn, sent as the proxy in front sends it.

The Host is the first concrete name of ``ALLOWED_HOSTS`` (127.0.0.1 when there is none) and the request
says it arrived over HTTPS (``X-Forwarded-Proto``), so production's host check and HTTPS redirect answer
200 rather than 400 or 301. Exit status 0 when healthy, 1 otherwise (Docker's HEALTHCHECK contract).
"""

import os
import sys
import urllib.request

PORT = os.environ.get("HEALTHCHECK_PORT", "8000")


def main() -> int:
    names = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",")]
    host = next((h for h in names if h and h != "*" and not h.startswith(".")), "127.0.0.1")
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORT}/health", headers={"Host": host, "X-Forwarded-Proto": "https"}
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"health check failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
