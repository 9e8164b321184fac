"""Start a real Label Studio for tests: ``label-studio`` from ``.venv-labelstudio`` (``make labelstudio``),
on a free loopback port, with its own SQLite data folder, a user with a known legacy API token,
local-file serving from one folder, and no call outside the machine."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.redis_server import free_port
from tests.server.live import wait_ready

ROOT = Path(__file__).resolve().parents[2]
LABEL_STUDIO = Path(os.environ.get("DTSEG_LABEL_STUDIO", ROOT / ".venv-labelstudio" / "bin" / "label-studio"))
TOKEN = "dtseg-test-token-0123456789"
USER, PASSWORD = "labeller@dtseg.test", "dtseg-test-pass"


@dataclass
class LabelStudio:
    url: str
    token: str
    files: Path  # the local-files document root
    output: list[str]


@contextlib.contextmanager
def label_studio(data_dir: Path, files: Path, timeout_s: float = 300) -> Iterator[LabelStudio]:
    """A running Label Studio (``/health`` answers) until the block ends, then stopped."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(data_dir), "LANG": "C.UTF-8",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        # offline: no version check on PyPI, no analytics, no Sentry
        "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        # the ML backend (dtseg serve) is on loopback too
        "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false",
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files),
    }
    process = subprocess.Popen(
        [str(LABEL_STUDIO), "start", "--no-browser", "--port", str(port), "--host", url, "--internal-host", "127.0.0.1",
         "--data-dir", str(data_dir), "--username", USER, "--password", PASSWORD,
         "--user-token", TOKEN, "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=data_dir)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        wait_ready(process, f"{url}/health", output, timeout_s, "Label Studio")
        yield LabelStudio(url, TOKEN, files, output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
