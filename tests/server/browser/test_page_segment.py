"""Segmenting on the page in headless Chromium: clicks in image pixels at any zoom, refinement
from the cached mask, boxes, several objects, undo / redo, multimask candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dtseg.masks import rle_to_mask
from tests.server.browser.driver import Driver

pytestmark = pytest.mark.browser


@pytest.fixture
def driver(page: Any, tmp_path: Path) -> Driver:
    d = Driver(page, tmp_path)
    d.open_bus()
    return d


def test_click_sends_one_request_in_image_pixels_and_draws_the_mask(driver: Driver) -> None:
    embeds = driver.sent("/sam/embed_image")
    assert len(embeds) == 1 and embeds[0]["image"]["value"].startswith("data:image/jpeg;base64,")
    assert driver.overlay_pixels() == 0
    fit = driver.zoom()
    assert fit < 1  # bus.jpg (810 x 1080) is shrunk to fit the window

    driver.click(400, 500)
    segments = driver.sent("/sam/segment_image")
    assert len(segments) == 1, segments
    assert segments[0]["point_coords"] == [[400, 500]] and segments[0]["point_labels"] == [1]
    assert "has_mask_input" not in segments[0]  # a first click has no mask to refine
    assert segments[0]["image_id"]
    drawn = driver.overlay_pixels()
    assert drawn > 1000, "the mask overlay is drawn"
    assert driver.page.text_content("#decodeStatus").startswith("decode ")
    driver.shot("1-first-click")

    driver.page.click("#zoomIn")
    driver.page.click("#zoomIn")
    assert driver.zoom() == pytest.approx(fit * 1.5625, rel=1e-3)
    driver.page.keyboard.press("n")
    driver.click(700, 300)
    segments = driver.sent("/sam/segment_image")
    assert len(segments) == 2 and segments[1]["point_coords"] == [[700, 300]]
    driver.page.click("#zoom100")
    driver.page.keyboard.press("n")
    driver.click(123, 987)
    assert driver.sent("/sam/segment_image")[2]["point_coords"] == [[123, 987]]
    sx, sy = driver.screen(250, 640)
    driver.page.mouse.move(sx, sy)
    assert driver.page.text_content("#coords") == "x 250, y 640"
    driver.shot("2-zoomed")


def test_negative_click_refines_from_the_cached_mask(driver: Driver) -> None:
    driver.click(400, 500)
    driver.click(420, 900, button="right")
    driver.click(300, 300, modifiers=["Alt"])
    _first, second, third = driver.sent("/sam/segment_image")
    assert second["point_coords"] == [[400, 500], [420, 900]] and second["point_labels"] == [1, 0]
    assert second["has_mask_input"] is True and second["use_mask_input_cache"] is True
    assert "mask_input" not in second  # the server has it: nothing heavy is sent
    assert third["point_labels"] == [1, 0, 0] and third["use_mask_input_cache"] is True
    assert len(driver.sent("/sam/embed_image")) == 1  # every decode used the cached embedding
    driver.shot("3-negative")


def test_box_then_objects_switch_and_undo(driver: Driver) -> None:
    driver.drag((100, 350), (300, 900))
    (box,) = driver.sent("/sam/segment_image")
    assert box["boxes"] == [100, 350, 300, 900] and "point_coords" not in box
    driver.page.keyboard.press("n")
    driver.click(600, 600)
    assert driver.object_names() == ["object", "object"]
    second = driver.sent("/sam/segment_image")[-1]
    assert "boxes" not in second and "has_mask_input" not in second  # a new object starts afresh

    driver.page.click("#objects li:nth-child(1)")  # back to the box object
    driver.click(200, 600)
    refine = driver.sent("/sam/segment_image")[-1]
    assert refine["boxes"] == [100, 350, 300, 900] and refine["point_coords"] == [[200, 600]]
    # the server's cached logits are the other object's: the page sends this object's own mask,
    # the low-res mask of its box decode, as +-10 logits on SAM's 256x256 grid
    assert refine["has_mask_input"] is True and refine["use_mask_input_cache"] is False
    logits = np.asarray(refine["mask_input"])
    assert logits.shape == (256, 256) and set(np.unique(logits)) <= {-10, 10}
    assert np.array_equal(logits > 0, rle_to_mask(driver.answers[0]["low_res_masks"][0]))

    driver.page.keyboard.press("z")  # undo the click: the box object is back to its box alone
    driver.click(250, 500)
    after_undo = driver.sent("/sam/segment_image")[-1]
    assert after_undo["point_coords"] == [[250, 500]] and after_undo["boxes"] == [100, 350, 300, 900]
    driver.page.keyboard.press("z")  # undo that click
    driver.page.keyboard.press("z")  # and the second object's click
    assert driver.object_names() == ["object", "object"]
    driver.page.keyboard.press("z")  # and its creation ("n")
    assert driver.object_names() == ["object"]
    driver.page.keyboard.press("Shift+Z")
    assert driver.object_names() == ["object", "object"]
    assert driver.page.locator("#objects li.selected").count() == 1
    driver.page.keyboard.press("Delete")  # removes the selected (new, empty) object
    assert driver.object_names() == ["object"]
    driver.shot("4-box")


def test_multimask_candidates_can_be_chosen(driver: Driver) -> None:
    driver.page.check("#multimask")
    driver.click(400, 500)
    request = driver.sent("/sam/segment_image")[-1]
    assert request["multimask_output"] is True
    buttons = driver.page.locator("#candidateList button")
    assert buttons.count() == 3
    scores = [float(t.split()[1]) for t in buttons.all_text_contents()]
    active = driver.page.locator("#candidateList button.active").text_content()
    assert float(active.split()[1]) == max(scores)
    before = driver.overlay_pixels()
    other = next(i for i, s in enumerate(scores) if s != max(scores))
    buttons.nth(other).click()
    assert driver.overlay_pixels() != before
    driver.click(410, 520)  # refining a candidate that is not SAM's best: its own mask goes along
    refine = driver.sent("/sam/segment_image")[-1]
    assert refine["use_mask_input_cache"] is False and refine["has_mask_input"] is True
    driver.shot("5-multimask")
