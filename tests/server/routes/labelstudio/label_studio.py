"""Start a real Label Studio for tests: ``label-studio`` from ``.venv-labelstudio`` (``make labelstudio``),
on a free loopback port, with its own SQLite data folder, a user with a known legacy API token,
local-file serving from one folder, and no call outside the machine.

Each data folder starts from a copy of one database with Label Studio's migrations applied, made
once per installed version (``make labelstudio`` or the first test): migrating a fresh SQLite file
costs ~25 CPU-seconds. ``python -m tests.server.routes.labelstudio.label_studio`` makes it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.redis_server import free_port
from tests.server.live import wait_ready

ROOT = Path(__file__).resolve().parents[4]
LABEL_STUDIO = Path(os.environ.get("DTSEG_LABEL_STUDIO", ROOT / ".venv-labelstudio" / "bin" / "label-studio"))
TOKEN = "dtseg-test-token-0123456789"
USER, PASSWORD = "labeller@dtseg.test", "dtseg-test-pass"


@dataclass
class LabelStudio:
    url: str
    token: str
    files: Path  # the local-files document root
    output: list[str]


DATABASE = "label_studio.sqlite3"  # Label Studio's SQLite file in its data folder


def environment(data_dir: Path, files: Path) -> dict[str, str]:
    """Label Studio's environment: data in ``data_dir``, local files served from ``files``, offline."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(data_dir), "LANG": "C.UTF-8",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        # offline: no version check on PyPI, no analytics, no Sentry
        "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        # the ML backend (dtseg serve) is on loopback too
        "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false",
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files),
    }


def migrated_database() -> Path | None:
    """The database with every migration of the installed Label Studio applied, kept in its venv as
    ``dtseg-tests/label_studio-<version>.sqlite3`` and made (``label-studio version`` migrates, then
    exits) when missing; ``None`` where the version cannot be read beside ``LABEL_STUDIO`` (each
    start then migrates its own)."""
    venv = LABEL_STUDIO.parent.parent
    versions = sorted(venv.glob("lib/python*/site-packages/label_studio-*.dist-info"))
    if not versions:
        return None
    database = venv / "dtseg-tests" / f"{versions[-1].name.removesuffix('.dist-info')}.sqlite3"
    if not database.is_file():
        database.parent.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=database.parent) as scratch:
            data_dir = Path(scratch)
            done = subprocess.run([str(LABEL_STUDIO), "version", "--data-dir", str(data_dir)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=environment(data_dir, data_dir),
                                  cwd=data_dir, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"Label Studio could not migrate its database: {done.stdout[-4000:]}")
            os.replace(data_dir / DATABASE, database)  # atomic: a concurrent session sees all or nothing
    return database


@contextlib.contextmanager
def label_studio(data_dir: Path, files: Path, port: int | None = None, timeout_s: float = 300) -> Iterator[LabelStudio]:
    """A running Label Studio (``/health`` answers) on loopback ``port`` (a free one by default), on
    a copy of ``migrated_database()`` in ``data_dir``, until the block ends; then stopped."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    database = migrated_database()
    if database is not None:
        shutil.copyfile(database, data_dir / DATABASE)
    env = environment(data_dir, files)
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


if __name__ == "__main__":
    print(migrated_database())
