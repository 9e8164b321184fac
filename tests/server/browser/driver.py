"""Drive the page like a person: open files, click image pixels at any zoom, record API requests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PIL import Image
from ultralytics.utils import ASSETS

BUS = Path(ASSETS) / "bus.jpg"  # 810 x 1080

# Scrolls the stage so that image pixel (x, y) is in view; returns its centre in page coordinates.
_SCREEN_OF = """([x, y]) => {
  const c = document.getElementById('canvas'), s = document.getElementById('stage');
  const at = () => { const r = c.getBoundingClientRect();
    return [r.left + (x + 0.5) * r.width / c.width, r.top + (y + 0.5) * r.height / c.height]; };
  const sr = s.getBoundingClientRect(), [px, py] = at();
  s.scrollLeft += px - (sr.left + sr.width / 2);
  s.scrollTop += py - (sr.top + sr.height / 2);
  return at();
}"""

# Pixels where the canvas differs from the bare image: what the page drew over it.
_OVERLAY = """() => {
  const c = document.getElementById('canvas'), app = window.dtsegPage;
  const bare = new OffscreenCanvas(c.width, c.height).getContext('2d');
  bare.drawImage(app.view.bitmap, 0, 0);
  const a = bare.getImageData(0, 0, c.width, c.height).data;
  const b = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < a.length; i += 4) if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) n++;
  return n;
}"""


class Driver:
    """One tab of the page; ``requests`` lists every API call's ``(path, json body)``."""

    def __init__(self, page: Any, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.requests: list[tuple[str, Any]] = []
        self.answers: list[Any] = []  # /sam/segment_image answers, in order
        page.on("request", self._record)

    def _record(self, request: Any) -> None:
        path = request.url.split("//", 1)[1].split("/", 1)[1].split("?")[0]
        if request.method == "POST":
            self.requests.append(("/" + path, json.loads(request.post_data or "null")))

    def sent(self, path: str) -> list[Any]:
        return [body for p, body in self.requests if p == path]

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def readme_shot(self) -> None:
        """With ``DTSEG_README_SCREENSHOT=path``: the page, 960 px wide, 64 colours, as a small PNG there."""
        target = os.environ.get("DTSEG_README_SCREENSHOT")
        if not target:
            return
        shot = Image.open(self.shot("readme")).convert("RGB")
        small = shot.resize((960, round(shot.height * 960 / shot.width)), Image.Resampling.LANCZOS)
        small.quantize(64).save(target, optimize=True)

    def open_bus(self) -> None:
        self.page.set_input_files("#file", str(BUS))
        self.page.wait_for_function("document.getElementById('embedStatus').textContent.startsWith('embedded in')",
                                    timeout=60_000)

    def idle(self) -> None:
        """Wait until no decode is running or queued."""
        self.page.wait_for_function("!window.dtsegPage.decoder.running && !window.dtsegPage.decoder.pending.size")

    def screen(self, x: int, y: int) -> tuple[float, float]:
        sx, sy = self.page.evaluate(_SCREEN_OF, [x, y])
        return sx, sy

    def click(self, x: int, y: int, button: str = "left", modifiers: list[str] | None = None) -> None:
        """Click image pixel (x, y) and wait for its decode."""
        sx, sy = self.screen(x, y)
        for key in modifiers or []:
            self.page.keyboard.down(key)
        with self.page.expect_response(lambda r: r.url.endswith("/sam/segment_image")) as answer:
            self.page.mouse.click(sx, sy, button=button)
        self.answers.append(answer.value.json())
        for key in modifiers or []:
            self.page.keyboard.up(key)
        self.idle()

    def drag(self, start: tuple[int, int], end: tuple[int, int], decode: bool = True) -> None:
        """Press at image pixel ``start``, move to ``end`` in steps, release."""
        sx, sy = self.screen(*start)
        self.page.mouse.move(sx, sy)
        self.page.mouse.down()
        ex, ey = self.screen(*end)
        self.page.mouse.move(ex, ey, steps=8)
        if decode:
            with self.page.expect_response(lambda r: r.url.endswith("/sam/segment_image")) as answer:
                self.page.mouse.up()
            self.answers.append(answer.value.json())
            self.idle()
        else:
            self.page.mouse.up()

    def download(self, selector: str, folder: Path) -> Path:
        """Click an export button; the downloaded file, saved under ``folder``."""
        with self.page.expect_download() as info:
            self.page.click(selector)
        path = folder / info.value.suggested_filename
        info.value.save_as(str(path))
        return path

    def overlay_pixels(self) -> int:
        return int(self.page.evaluate(_OVERLAY))

    def object_names(self) -> list[str]:
        return self.page.eval_on_selector_all("#objects li input", "els => els.map(e => e.value)")

    def zoom(self) -> float:
        return float(self.page.evaluate("window.dtsegPage.view.zoom"))

