"""Waiting for a dashboard a browser test started: until its health endpoint answers, or its process dies."""

from __future__ import annotations

import subprocess
import time
import urllib.request


def wait_until_healthy(proc: subprocess.Popen, port: int, seconds: float = 60) -> None:
    """Return once http://127.0.0.1:port/_stcore/health answers; fail with the server's output if it exits, or
    after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return
        except OSError:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.5)
