"""``python -m platforms.sandbox [--host 127.0.0.1] [--port 8100]``."""

from platforms.sandbox.server import main

main()
