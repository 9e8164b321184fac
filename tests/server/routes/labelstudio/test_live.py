"""dtseg serve as the ML backend of a real Label Studio: a project made with label-studio-sdk, tasks
from local files, a click through Label Studio's interactive API and "retrieve predictions", then
a click on Label Studio's own page in headless Chromium.

The stored predictions must be brush RLE that decodes to exactly the engine's masks."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml

from dtseg import Prompts, SamEngine
from dtseg.labelstudio.label_config import label_config_xml
from dtseg.labelstudio.regions import brush_mask
from tests.outside import require_file, require_module
from tests.redis_server import free_port
from tests.server.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.server.live import launch, stopped_at_end
from tests.server.routes.labelstudio.label_studio import LABEL_STUDIO, PASSWORD, USER, LabelStudio, label_studio
from tests.server.server_helpers import png_bytes, synthetic_image

pytestmark = [pytest.mark.slow, pytest.mark.labelstudio]
API_KEY = "dtseg-ls-key"
OBJECTS = [{"points": [[20, 18]], "class_name": "disc"}, {"box": [30, 25, 60, 45], "class_name": "block"},
           {"points": [[5, 5]], "class_name": "sky"}]  # "sky" is not in the label config


@pytest.fixture(scope="module")
def running(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabelStudio, str]]:
    """Label Studio, and ``dtseg serve`` as its backend with an API key, a pre-annotation pipeline and
    Label Studio's address; started together (dtseg serve reaches Label Studio only when asked)."""
    require_file(LABEL_STUDIO, "`make labelstudio` installs Label Studio in its own venv")
    files = tmp_path_factory.mktemp("ls-files")
    (files / "images").mkdir()
    (files / "images" / "scene.png").write_bytes(png_bytes(synthetic_image(48, 64, seed=3)))
    port = free_port()
    folder = tmp_path_factory.mktemp("ls-serve")
    (folder / "configs").mkdir()
    (folder / "configs" / "manual.yaml").write_text(yaml.safe_dump(
        {"sam": {"model": "tiny"}, "prompts": [{"points": {"objects": OBJECTS}}]}))
    config = folder / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "sam": {"model": "tiny", "checkpoint": str(tiny_checkpoint), "device": "cpu", "dtype": "fp32"},
        "server": {"api_keys": [API_KEY], "configs_dir": str(folder / "configs"),
                   "labelstudio": {"url": f"http://127.0.0.1:{port}", "pipeline": "manual"}}}))
    data = tmp_path_factory.mktemp("ls-data")
    with stopped_at_end([launch(config)]) as [served], label_studio(data, files, port) as studio:
        served.wait_ready(timeout_s=90)
        yield studio, served.url
        assert served.process.poll() is None, "dtseg serve died during the test"


@pytest.fixture(scope="module")
def studio(running: tuple[LabelStudio, str]) -> LabelStudio:
    return running[0]


@pytest.fixture(scope="module")
def backend(running: tuple[LabelStudio, str]) -> str:
    return running[1]


def test_label_studio_gets_dtseg_masks(studio: LabelStudio, backend: str, tiny_checkpoint: Path) -> None:
    from label_studio_sdk import LabelStudio as Client

    client = Client(base_url=studio.url, api_key=studio.token)
    project = client.projects.create(title="dtseg", label_config=label_config_xml(["disc", "block"]))
    storage = client.import_storage.local.create(project=project.id, path=str(studio.files / "images"),
                                                 use_blob_urls=True, title="images")
    client.import_storage.local.sync(id=storage.id)
    tasks = list(client.tasks.list(project=project.id))
    assert len(tasks) == 1 and "/data/local-files/?d=images/scene.png" in tasks[0].data["image"]
    task_id = tasks[0].id
    # Label Studio calls /health and /setup here: a wrong key would fail the connection
    ml = client.ml.create(project=project.id, url=f"{backend}/labelstudio", title="dtseg", is_interactive=True,
                          auth_method="BASIC_AUTH", basic_auth_user="labelstudio", basic_auth_pass=API_KEY)
    engine = SamEngine.load("tiny", tiny_checkpoint, device="cpu")
    image = synthetic_image(48, 64, seed=3)

    # a smart keypoint, through Label Studio's own interactive-annotating API
    context = {"result": [{"original_width": 64, "original_height": 48, "image_rotation": 0, "id": "k1",
                           "from_name": "click", "to_name": "image", "type": "keypointlabels", "is_positive": True,
                           "value": {"x": 25.0, "y": 37.5, "width": 1, "keypointlabels": ["disc"]}}]}
    answer = requests.post(f"{studio.url}/api/ml/{ml.id}/interactive-annotating", json={"task": task_id,
                           "context": context}, headers={"Authorization": f"Token {studio.token}"}, timeout=120)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    assert "error" not in data, data
    [region] = data["result"]
    expected = engine.segment(image, Prompts.from_objects([{"points": [[16, 18]]}]), multimask_output=True)
    np.testing.assert_array_equal(brush_mask(region), expected.mask[0])
    assert region["value"]["brushlabels"] == ["disc"] and "tiny float32" in data["model_version"]

    # "Retrieve predictions": every object of the pipeline, stored by Label Studio
    client.actions.create(id="retrieve_tasks_predictions", project=project.id,
                          selected_items={"all": False, "included": [task_id]})
    [prediction] = client.predictions.list(task=task_id)
    assert "manual" in prediction.model_version and "tiny" in prediction.model_version
    regions = prediction.result
    assert [r["value"]["brushlabels"] for r in regions] == [["disc"], ["block"]]  # "sky" has no label
    pipeline = engine.segment(image, Prompts.from_objects([{k: v for k, v in o.items() if k != "class_name"}
                                                           for o in OBJECTS[:2]]))
    for stored, mask in zip(regions, pipeline.mask, strict=True):
        decoded = brush_mask(stored)
        assert decoded.shape == mask.shape and (decoded & mask).sum() == (decoded | mask).sum()  # IoU 1.0


def test_a_click_in_label_studios_page_gives_a_dtseg_mask(studio: LabelStudio, backend: str) -> None:
    """Headless Chromium on Label Studio's labelling page: Auto-Annotation on, the smart keypoint
    label "person", one click on the image -> Label Studio asks dtseg and shows a brush region.
    ``DTSEG_LABELSTUDIO_SCREENSHOT=FILE`` saves the page (docs/img/labelstudio.png)."""
    sync_api = require_module("playwright.sync_api", "pip install playwright (the test extra)")
    require_file(CHROMIUM, "`make test` installs it (apt-get install chromium)")
    from label_studio_sdk import LabelStudio as Client
    from ultralytics.utils import ASSETS

    (studio.files / "photos").mkdir(exist_ok=True)
    shutil.copy(ASSETS / "zidane.jpg", studio.files / "photos" / "zidane.jpg")
    client = Client(base_url=studio.url, api_key=studio.token)
    project = client.projects.create(title="dtseg click", label_config=label_config_xml(["person", "tie"]))
    storage = client.import_storage.local.create(project=project.id, path=str(studio.files / "photos"),
                                                 use_blob_urls=True, title="photos")
    client.import_storage.local.sync(id=storage.id)
    [task] = list(client.tasks.list(project=project.id))
    client.ml.create(project=project.id, url=f"{backend}/labelstudio", title="dtseg", is_interactive=True,
                     auth_method="BASIC_AUTH", basic_auth_user="labelstudio", basic_auth_pass=API_KEY)
    shot = os.environ.get("DTSEG_LABELSTUDIO_SCREENSHOT")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            page.goto(f"{studio.url}/user/login/")
            page.fill("input[name=email]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/user/login" not in url, timeout=60_000)
            page.goto(f"{studio.url}/projects/{project.id}/data?tab=0&task={task.id}")
            page.wait_for_selector("[data-testid=bottombar-auto-annotation-toggle]", state="attached", timeout=120_000)
            page.wait_for_selector(".lsf-label__text", timeout=60_000)
            page.locator("[data-testid=bottombar-auto-annotation-toggle]").check(force=True)
            page.locator(".lsf-label", has_text="person").nth(1).click()  # KeyPointLabels' "person"
            # the smart keypoint tool (in the toolbar's folded group of smart tools)
            page.locator(".lsf-tool_smart[aria-label=key-point-tool]").evaluate("button => button.click()")
            box = page.evaluate("""() => {  // the labelled image: the largest one on the page
                const rects = [...document.querySelectorAll('img')].map(i => i.getBoundingClientRect())
                    .filter(r => r.width > 0).sort((a, b) => b.width * b.height - a.width * a.height);
                return {x: rects[0].x, y: rects[0].y, width: rects[0].width, height: rects[0].height};
            }""")
            with page.expect_response(lambda r: "interactive-annotating" in r.url, timeout=120_000) as asked:
                page.mouse.click(box["x"] + box["width"] * 0.42, box["y"] + box["height"] * 0.5)
            data = asked.value.json()["data"]
            assert asked.value.ok and "error" not in data, data
            assert [(r["type"], r["value"]["brushlabels"]) for r in data["result"]] == [("brushlabels", ["person"])]
            page.get_by_text("1 suggestions").wait_for(timeout=60_000)  # Label Studio shows dtseg's mask to accept
            page.wait_for_timeout(1500)  # the mask is drawn
        finally:
            if shot:
                page.screenshot(path=shot)
            browser.close()
