"""Start real ``dtseg serve`` processes for tests (a context manager; always killed at the end)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Iterator

import requests

from tests.redis_server import free_port


@contextlib.contextmanager
def serve(config_path: str, *args: str, timeout_s: float = 120) -> Iterator[tuple[str, list[str]]]:
    """``python -m dtseg.cli.serve --config config_path *args`` on a free port: ``(base_url, output lines)``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DTSEG_API_KEYS"}
    proc = subprocess.Popen([sys.executable, "-m", "dtseg.cli.serve", "--config", config_path, "--port", str(port),
                             "--log-level", "warning", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {''.join(lines)}")
            try:
                if requests.get(f"{base_url}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield base_url, lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
