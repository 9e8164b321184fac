"""Zones, pipelines and exports on the page in headless Chromium: the zones YAML runs as a
pipeline, COCO loads in pycocotools, PNG masks and the annotated image match the page's masks."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO

from dtseg import SamEngine
from dtseg.masks import rle_to_mask
from dtseg.pipeline import Pipeline
from tests.server.browser.driver import BUS, Driver

pytestmark = pytest.mark.browser
SHAPE = (1080, 810)


@pytest.fixture
def driver(page: Any, tmp_path: Path) -> Driver:
    d = Driver(page, tmp_path)
    d.open_bus()
    return d


def test_zone_drawn_dragged_exported_as_yaml_runs(driver: Driver, engine: SamEngine, tmp_path: Path) -> None:
    page = driver.page
    page.click("#toolZone")
    for x, y in [(100, 500), (700, 500), (700, 1000), (100, 1000), (100, 500)]:  # the last closes it
        page.mouse.click(*driver.screen(x, y))
    assert page.locator("#zones li").count() == 1
    driver.drag((700, 1000), (750, 1050), decode=False)  # move a vertex
    page.mouse.click(*driver.screen(300, 200))  # two vertices, then Esc: no zone
    page.mouse.click(*driver.screen(500, 200))
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    assert page.locator("#zones li").count() == 1
    page.mouse.click(*driver.screen(300, 200))  # a second zone, closed with Enter
    page.mouse.click(*driver.screen(500, 200))
    page.mouse.click(*driver.screen(400, 350))
    page.keyboard.press("Enter")
    assert page.locator("#zones li").count() == 2
    page.keyboard.press("Delete")  # the selected (second) zone
    assert page.locator("#zones li").count() == 1
    assert driver.sent("/sam/segment_image") == []  # zone clicks never segment
    driver.shot("6-zone")
    page.click("#copyYaml")
    text = page.input_value("#snippet")
    config = yaml.safe_load(text)
    assert config["prompts"] == [{"zones": {"zones": [
        {"name": "zone0", "polygon": [[100, 500], [700, 500], [750, 1050], [100, 1000]]}]}}]
    path = tmp_path / "zones.yaml"
    path.write_text(text)
    pipeline = Pipeline.from_config(path, engine=engine)  # the server's model: the tiny one here
    detections = pipeline(str(BUS))
    assert len(detections) == 1 and list(detections.data["zone"]) == ["zone0"]
    assert detections.mask.shape == (1, *SHAPE)


def test_prompts_copied_as_payload_and_python(driver: Driver) -> None:
    driver.click(400, 500)
    driver.click(420, 900, button="right")
    driver.page.click("#copyJson")
    payload = json.loads(driver.page.input_value("#snippet"))
    assert payload == {"image_id": driver.sent("/sam/segment_image")[0]["image_id"],
                       "point_coords": [[400, 500], [420, 900]], "point_labels": [1, 0]}
    driver.page.click("#copyPython")
    code = driver.page.input_value("#snippet")
    namespace: dict[str, Any] = {}
    exec(compile(code.split("res = requests.post")[0], "snippet", "exec"), namespace)  # up to the network call
    assert namespace["payload"] == payload and namespace["api_key"] == "YOUR_API_KEY"
    assert namespace["base_url"].startswith("http://127.0.0.1:")


def test_exports_match_the_page_masks(driver: Driver, tmp_path: Path) -> None:
    page = driver.page
    driver.click(400, 500)
    page.fill("#objects li:nth-child(1) input", "bus")
    page.keyboard.press("Enter")
    page.keyboard.press("n")
    driver.click(700, 300)
    expected = [rle_to_mask(a["masks"][0]) for a in driver.answers]
    assert driver.object_names() == ["bus", "object"]

    coco = COCO(str(driver.download("#exportCoco", tmp_path)))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["bus", "object"]
    (image,) = coco.loadImgs(coco.getImgIds())
    assert (image["height"], image["width"]) == SHAPE and image["file_name"] == "bus"
    annotations = coco.loadAnns(coco.getAnnIds())
    assert len(annotations) == 2
    for annotation, mask in zip(annotations, expected, strict=True):
        assert np.array_equal(coco.annToMask(annotation).astype(bool), mask)
        assert annotation["area"] == mask.sum()

    with zipfile.ZipFile(driver.download("#exportMasks", tmp_path)) as archive:
        assert sorted(archive.namelist()) == ["bus_0.png", "bus_1.png"]
        for i, mask in enumerate(expected):
            png = cv2.imdecode(np.frombuffer(archive.read(f"bus_{i}.png"), np.uint8), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(png > 0, mask)

    annotated = cv2.imread(str(driver.download("#exportAnnotated", tmp_path)))
    original = cv2.imread(str(BUS))
    assert annotated.shape == original.shape
    changed = np.any(annotated != original, axis=2)
    assert changed[expected[0] | expected[1]].mean() > 0.9  # drawn over the masks
    driver.shot("7-exported")


def test_pipeline_detections_become_objects_refined_by_clicks(driver: Driver) -> None:
    page = driver.page
    assert page.locator("#pipeline option").all_text_contents() == ["points"]
    with page.expect_response(lambda r: r.url.endswith("/segment")) as info:
        page.click("#pipelineForm button")
    detections = info.value.json()["detections"]
    page.wait_for_function("document.querySelectorAll('#objects li').length === 3")
    assert driver.object_names() == ["bus", "person", "person"]  # configs/points.yaml's objects
    assert driver.overlay_pixels() > 1000
    page.click("#objects li:nth-child(2)")
    driver.click(150, 650)
    refine = driver.sent("/sam/segment_image")[-1]
    assert refine["point_coords"] == [[150, 650]] and refine["boxes"] == [round(v) for v in detections[1]["box"]]
    assert page.locator("#objects li").count() == 3
    page.click("#toolZone")  # a zone too, for the README's picture of the page
    for x, y in [(60, 720), (760, 720), (760, 1040), (60, 1040)]:
        page.mouse.click(*driver.screen(x, y))
    page.keyboard.press("Enter")
    page.click("#copyPython")
    driver.shot("8-pipeline")
    driver.readme_shot()


def test_everything_button_makes_objects_of_the_kept_masks(driver: Driver) -> None:
    """The header's Everything button posts the image to /everything with its score; the kept masks
    become objects, and the status line says how many of the grid's masks were kept."""
    page = driver.page
    page.fill("#everythingScore", "1")  # the tiny random model scores below 1: nothing kept, and it says why
    with page.expect_response(lambda r: r.url.endswith("/everything")) as info:
        page.click("#everything")
    assert info.value.json()["detections"] == [] and info.value.json()["prompts"] == 256
    page.wait_for_function("document.getElementById('decodeStatus').textContent.startsWith('everything: kept 0')")
    status = page.text_content("#decodeStatus")
    assert "of 256 masks" in status and "lower the score" in status
    assert driver.sent("/everything")[-1]["pred_iou_thresh"] == 1
    page.fill("#everythingScore", "0")
    with page.expect_response(lambda r: r.url.endswith("/everything")) as info:
        page.click("#everything")
    kept = info.value.json()["detections"]
    assert 0 < len(kept) <= 256
    page.wait_for_function(f"document.querySelectorAll('#objects li').length === {len(kept)}")
    assert page.text_content("#decodeStatus").startswith(f"everything: kept {len(kept)} of 256 masks")
    assert driver.overlay_pixels() > 1000
    driver.shot("9-everything")
