"""A live ``dtseg serve`` (tiny random SAM, auth on, one pipeline config) and headless Chromium.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``make test``), driven by Playwright
for Python; Playwright's own browser download is never used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.outside import require_file, require_module
from tests.server.live import serving

CHROMIUM = Path(os.environ.get("DTSEG_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
API_KEY = "browser-test-key"
REPO = Path(__file__).resolve().parents[3]

@pytest.fixture(scope="session")
def live_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m dtseg.cli.serve`` on a free loopback port, API key on, ``configs/points.yaml`` served."""
    root = tmp_path_factory.mktemp("page-serve")
    (root / "configs").mkdir()
    shutil.copy(REPO / "configs" / "points.yaml", root / "configs" / "points.yaml")
    config = root / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "sam": {"model": "tiny", "checkpoint": str(tiny_checkpoint), "device": "cpu"},
        "server": {"api_keys": [API_KEY], "configs_dir": str(root / "configs")}}))
    with serving(config, timeout_s=90) as served:
        assert any(f"open {served.url}/ in a browser" in line for line in served.output), served.output
        yield served.url
        assert served.process.poll() is None, f"the server died: {''.join(served.output)}"


@pytest.fixture(scope="package")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium for this folder's tests. Playwright's sync API keeps an event loop running in the
    main thread while it is open: closed with the folder, so later tests can run their own."""
    require_file(CHROMIUM, "`make test` installs it (apt-get install chromium)")
    sync_api = require_module("playwright.sync_api", "pip install playwright (the test extra)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            accept_downloads=True, viewport={"width": 1280, "height": 860})
        yield context
        context.close()


@pytest.fixture
def page(browser: Any, live_server: str) -> Iterator[Any]:
    """A fresh tab on the page, the API key given through the page's own key dialog."""
    with open_page(browser, live_server) as tab:
        yield tab


@contextlib.contextmanager
def open_page(browser: Any, url: str) -> Iterator[Any]:
    """A fresh tab on the page at ``url`` (a server with ``API_KEY``), the key given through the
    page's own key dialog; closed at the end, with no error raised in the page."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(url + "/")
    tab.evaluate("sessionStorage.clear()")
    tab.reload()
    tab.wait_for_selector("#keyDialog[open]")
    tab.fill("#keyInput", API_KEY)
    tab.click("#keyForm button[value=ok]")
    tab.wait_for_function("document.getElementById('serverStatus').textContent.includes('tiny')")
    yield tab
    tab.close()
    assert not errors, errors
