"""SAM 3 on the page in headless Chromium: the phrase field adds every match as objects, the
Exemplar tool turns a box into every similar object (an Alt-box excludes objects like it)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml

from tests.server.browser.conftest import API_KEY, open_page
from tests.server.browser.driver import BUS, Driver
from tests.server.live import serving

pytestmark = pytest.mark.browser
AUTH = {"Authorization": f"Bearer {API_KEY}"}
BUS_IMAGE = {"type": "base64", "value": base64.b64encode(BUS.read_bytes()).decode()}


@pytest.fixture(scope="module")
def sam3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dtseg serve`` with a random ``tiny_sam3`` as ``sam.model``: one engine for the page's
    clicks and ``/sam3``."""
    config = tmp_path_factory.mktemp("page-sam3") / "serve.yaml"
    config.write_text(yaml.safe_dump({"sam": {"model": "tiny_sam3", "checkpoint": "random", "device": "cpu"},
                                      "server": {"api_keys": [API_KEY]}}))
    with serving(config, timeout_s=120) as served:
        yield served.url


@pytest.fixture
def driver(browser: Any, sam3_server: str, tmp_path: Path) -> Iterator[Driver]:
    with open_page(browser, sam3_server) as tab:
        d = Driver(tab, tmp_path)
        d.open_bus()
        yield d


def concepts(url: str, prompts: list[dict], threshold: float) -> list[int]:
    """How many instances ``/sam3/concept_segment`` finds per prompt on bus.jpg."""
    response = requests.post(f"{url}/sam3/concept_segment", headers=AUTH, json={
        "image": BUS_IMAGE, "prompts": prompts, "output_prob_thresh": threshold, "format": "rle"})
    response.raise_for_status()
    return [len(r["predictions"]) for r in response.json()["prompt_results"]]


def top_tenth(url: str, prompt: dict) -> float:
    """Random weights: a threshold keeping about the top tenth of the prompt's instances."""
    response = requests.post(f"{url}/sam3/concept_segment", headers=AUTH, json={
        "image": BUS_IMAGE, "prompts": [prompt], "output_prob_thresh": 0.0, "format": "rle"})
    response.raise_for_status()
    return float(np.quantile([p["confidence"] for p in response.json()["prompt_results"][0]["predictions"]], 0.9))


def find(driver: Driver, action: Any) -> dict:
    """Run ``action`` (a click, a drag) and wait for its concept answer to become objects; the request body."""
    with driver.page.expect_response(lambda r: r.url.endswith("/sam3/concept_segment")):
        action()
    driver.page.wait_for_function("document.getElementById('decodeStatus').textContent.startsWith('found')")
    return driver.sent("/sam3/concept_segment")[-1]


def test_without_sam3_the_page_offers_no_phrases(page: Any) -> None:
    assert page.is_hidden("#conceptForm") and page.is_hidden("#toolExemplar")


def test_phrases_add_every_match_as_objects_from_the_cached_embedding(driver: Driver, sam3_server: str) -> None:
    threshold = top_tenth(sam3_server, {"text": "person"})
    counts = concepts(sam3_server, [{"text": "person"}, {"text": "red car"}], threshold)
    assert counts[0] > 0
    calls = requests.get(f"{sam3_server}/info", headers=AUTH).json()["encoder_calls"]
    driver.page.fill("#conceptScore", str(threshold))
    driver.page.fill("#concepts", " person, red car ,")
    sent = find(driver, lambda: driver.page.click("#findConcepts"))
    assert sent["prompts"] == [{"type": "text", "text": "person"}, {"type": "text", "text": "red car"}]
    image_id = driver.page.evaluate("window.dtsegPage.imageId")
    assert sent["output_prob_thresh"] == threshold and sent["image_id"] == image_id
    assert driver.object_names() == ["person"] * counts[0] + ["red car"] * counts[1]
    assert driver.overlay_pixels() > 1000
    assert requests.get(f"{sam3_server}/info", headers=AUTH).json()["encoder_calls"] == calls  # the page's embedding
    driver.shot("concepts")
    driver.page.keyboard.press("z")  # one undo step removes them all
    assert driver.object_names() == []


def test_exemplar_boxes_find_similar_objects_and_alt_boxes_exclude(driver: Driver, sam3_server: str) -> None:
    first = {"x0": 300, "y0": 400, "x1": 500, "y1": 700}
    threshold = top_tenth(sam3_server, {"boxes": [first]})
    driver.page.fill("#conceptScore", str(threshold))
    driver.page.click("#toolExemplar")
    sent = find(driver, lambda: driver.drag((300, 400), (500, 700), decode=False))
    assert sent["prompts"] == [{"type": "visual", "boxes": [first], "box_labels": [1]}]
    (count,) = concepts(sam3_server, sent["prompts"], threshold)
    assert count > 0 and driver.object_names() == ["exemplar"] * count

    driver.page.keyboard.down("Alt")
    sent = find(driver, lambda: driver.drag((60, 500), (250, 800), decode=False))
    driver.page.keyboard.up("Alt")
    second = {"x0": 60, "y0": 500, "x1": 250, "y1": 800}
    assert sent["prompts"] == [{"type": "visual", "boxes": [first, second], "box_labels": [1, 0]}]
    (count,) = concepts(sam3_server, sent["prompts"], threshold)
    assert driver.object_names() == ["exemplar"] * count  # the answer replaces the previous one's objects

    driver.page.keyboard.press("Escape")  # a new query: the objects found so far stay
    sent = find(driver, lambda: driver.drag((300, 400), (500, 700), decode=False))
    assert sent["prompts"] == [{"type": "visual", "boxes": [first], "box_labels": [1]}]
    (again,) = concepts(sam3_server, sent["prompts"], threshold)
    assert driver.object_names() == ["exemplar"] * (count + again)
    assert driver.sent("/sam/segment_image") == []  # exemplar boxes are not SAM box prompts
