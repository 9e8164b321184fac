"""Opening images and reading errors on the page in headless Chromium: drop, paste, a refused
URL, a wrong API key (the page asks again; it never dies)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dtseg.masks import mask_to_rle
from tests.server.browser.conftest import API_KEY
from tests.server.browser.driver import Driver
from tests.server.server_helpers import png_bytes, synthetic_image

pytestmark = pytest.mark.browser

# Hands the page a file the way a drop or a paste does (a DataTransfer holding a File).
_GIVE = """([kind, b64, name]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type: 'image/png' }));
  const stage = document.getElementById('stage');
  if (kind === 'drop') stage.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true }));
  else document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true }));
}"""


def _give(page: Any, kind: str, height: int, width: int) -> None:
    data = base64.b64encode(png_bytes(synthetic_image(height, width, seed=height))).decode()
    page.evaluate(_GIVE, [kind, data, f"{kind}.png"])
    page.wait_for_function(f"document.getElementById('imageStatus').textContent === '{kind}.png · {width} x {height}'")
    page.wait_for_function("document.getElementById('embedStatus').textContent.startsWith('embedded in')")


def test_drop_and_paste_open_and_embed_images(page: Any, tmp_path: Path) -> None:
    driver = Driver(page, tmp_path)
    _give(page, "drop", 120, 160)
    _give(page, "paste", 90, 200)
    assert len(driver.sent("/sam/embed_image")) == 2
    driver.click(150, 40)
    assert driver.sent("/sam/segment_image")[0]["point_coords"] == [[150, 40]]


def test_errors_are_shown_and_the_page_lives(page: Any, tmp_path: Path) -> None:
    driver = Driver(page, tmp_path)
    page.fill("#url", "http://127.0.0.1:9/bus.jpg")
    page.click("#urlForm button")
    page.wait_for_selector("#error:not([hidden])")
    assert "private" in page.text_content("#errorText")  # the server's guarded fetch refused it
    page.click("#errorClose")
    driver.shot("9-error")
    page.click("#copyYaml")  # nothing to export yet: said so, nothing breaks
    assert "draw a zone" in page.text_content("#errorText")

    page.evaluate("sessionStorage.setItem('dtseg.apiKey', 'wrong-key')")
    page.reload()
    page.wait_for_selector("#keyDialog[open]")
    assert "refused" in page.text_content("#keyMessage") and "invalid API key" in page.text_content("#keyMessage")
    page.fill("#keyInput", API_KEY)
    page.click("#keyForm button[value=ok]")
    page.wait_for_function("document.getElementById('serverStatus').textContent.includes('auth on')")
    assert page.evaluate("sessionStorage.getItem('dtseg.apiKey')") == API_KEY
    driver.open_bus()
    driver.click(400, 500)
    assert len(driver.sent("/sam/segment_image")) == 1


def test_page_decodes_rle_like_pycocotools(page: Any) -> None:
    """The page draws masks from the server's COCO RLE: its decoder gives pycocotools' pixels."""
    rng = np.random.default_rng(5)
    masks = [rng.random((37, 53)) < 0.5, np.zeros((20, 30), bool), np.ones((9, 4), bool)]
    masks[1][3:15, 7:29] = True
    for mask in masks:
        pixels = page.evaluate("async (rle) => Array.from((await import('/static/rle.js')).decode(rle))",
                               mask_to_rle(mask))
        assert np.array_equal(np.asarray(pixels, bool).reshape(mask.shape), mask)
