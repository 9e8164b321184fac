"""How close two results are: the measures the parity tests share, for feature tensors and for
masks, and the comparison of an engine's segmentation with a reference predictor's."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of ``a`` and ``b`` flattened, in float64."""
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


def rel_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of ``ref``."""
    return float((ours.float() - ref).abs().max() / ref.abs().max())


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks of one shape (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def reference_predict(predictor: Any, prompt: dict, multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``predictor.predict`` (``SamPredictor``'s signature) for one object: ``prompt`` holds
    ``segment_image``'s ``point_coords``, ``point_labels``, ``boxes`` and ``mask_input`` (each
    optional). Returns masks (C, H, W), scores (C,) and low-res logits (C, 256, 256)."""
    coords = prompt.get("point_coords")
    return predictor.predict(
        point_coords=None if coords is None else np.array(coords, dtype=np.float32),
        point_labels=None if coords is None else np.array(prompt["point_labels"]),
        box=None if prompt.get("boxes") is None else np.array(prompt["boxes"], dtype=np.float32),
        mask_input=prompt.get("mask_input"),
        multimask_output=multimask,
        return_logits=False,
    )


def assert_matches(result: Any, ref_masks: np.ndarray, ref_scores: np.ndarray, ref_logits: np.ndarray) -> None:
    """``result`` (a ``SegmentResult``) holds the reference's (N, C, ...) arrays: scores and
    low-res logits within 1e-4, every mask IoU >= 0.99."""
    np.testing.assert_allclose(result.scores, ref_scores, atol=1e-4)
    np.testing.assert_allclose(result.low_res_logits, ref_logits, atol=1e-4)
    assert result.masks.shape == ref_masks.shape
    side = ref_masks.shape[-2:]
    for ours, theirs in zip(result.masks.reshape(-1, *side), ref_masks.reshape(-1, *side), strict=True):
        assert mask_iou(ours, theirs) >= 0.99


def assert_matches_reference(result: Any, predictor: Any, prompt: dict, multimask: bool = True) -> None:
    """``result``, one object's segmentation of ``prompt``, is what ``predictor`` gives for it."""
    assert_matches(result, *(x[None] for x in reference_predict(predictor, prompt, multimask)))


def assert_boxes_match_reference(engine: Any, predictor: Any, size: tuple[int, int], count: int,
                                 multimask: bool) -> None:
    """``count`` seeded random boxes within an image of ``size`` (H, W), segmented in one call on
    the engine's image ``"img"``, give what ``predictor`` gives for each box alone."""
    h, w = size
    rng = np.random.default_rng(3)
    xy = rng.uniform([0, 0], [w * 0.6, h * 0.6], (count, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(20, [w * 0.4, h * 0.4], (count, 2))], axis=1).astype(np.float32)
    result = engine.segment_image(image_id="img", boxes=boxes, multimask_output=multimask)
    references = [reference_predict(predictor, {"boxes": box}, multimask) for box in boxes]
    assert_matches(result, *(np.stack(x) for x in zip(*references, strict=True)))
