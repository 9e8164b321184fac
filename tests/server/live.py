"""Start real ``dtseg serve`` processes for tests (context managers; always stopped at the end)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.redis_server import free_port


@dataclass
class Served:
    """A running ``dtseg serve``: its URL, process, and the output lines read so far."""

    url: str
    process: subprocess.Popen
    output: list[str]
    reader: threading.Thread

    def stop(self) -> int:
        """SIGTERM (a clean shutdown), then wait; returns the exit status. The output is complete after."""
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=30)
        self.reader.join(timeout=10)
        return status

    def wait_ready(self, timeout_s: float) -> None:
        """Until ``/healthz`` answers (``wait_ready``)."""
        wait_ready(self.process, f"{self.url}/healthz", self.output, timeout_s, "server")


def wait_ready(process: subprocess.Popen, health_url: str, output: list[str], timeout_s: float, name: str) -> None:
    """Poll ``health_url`` until it answers 2xx; ``RuntimeError`` with ``process``'s ``output``
    if the process exits or ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start: {''.join(output)[-4000:]}")
        try:
            if requests.get(health_url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)


def launch(config_path: str | Path, *args: str) -> Served:
    """Start ``python -m dtseg.cli.serve --config config_path *args`` on a free loopback port, not
    waiting for it. ``$DTSEG_API_KEYS`` is not passed on: the config alone decides auth."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DTSEG_API_KEYS"}
    process = subprocess.Popen([sys.executable, "-m", "dtseg.cli.serve", "--config", str(config_path), "--port",
                                str(port), "--log-level", "warning", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    return Served(f"http://127.0.0.1:{port}", process, output, reader)


@contextlib.contextmanager
def stopped_at_end(started: list[Served]) -> Iterator[list[Served]]:
    """``started`` until the block ends; then each still running is stopped (SIGTERM to all, then
    waited for; killed if need be)."""
    try:
        yield started
    finally:
        running = [served.process for served in started if served.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextlib.contextmanager
def servers(config_path: str | Path, count: int, *args: str, timeout_s: float = 120) -> Iterator[list[Served]]:
    """``count`` servers of one config, started together (their imports and model loads overlap),
    all ready (``/healthz``) when yielded; each stopped at the end."""
    with stopped_at_end([launch(config_path, *args) for _ in range(count)]) as started:
        for served in started:
            served.wait_ready(timeout_s)
        yield started


@contextlib.contextmanager
def serving(config_path: str | Path, *args: str, timeout_s: float = 120) -> Iterator[Served]:
    """One server (``servers`` of one): ready when yielded, stopped at the end."""
    with servers(config_path, 1, *args, timeout_s=timeout_s) as [served]:
        yield served


@contextlib.contextmanager
def serve(config_path: str, *args: str, timeout_s: float = 120) -> Iterator[tuple[str, list[str]]]:
    """``serving`` as ``(base_url, output lines)``."""
    with serving(config_path, *args, timeout_s=timeout_s) as served:
        yield served.url, served.output
