"""FastMaskDecoder on SAM 2.1's decoder: parity with ``sam2``'s ``MaskDecoder.forward`` (the
module the reference predictor runs: object-score token, high-res features, dynamic multimask)
on seeded random weights and random image features."""

from __future__ import annotations

import warnings

import pytest
import torch

from dtseg.engine.checkpoints import build_model
from dtseg.errors import RandomWeightsWarning
from dtseg.nn.decoder import FastMaskDecoder
from tests.nn.test_decoder import ATOL, _boxes, _max_err, _points


@pytest.fixture(scope="module")
def net():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return build_model("tiny_sam2.1", "random", seed=4).net


@pytest.fixture(scope="module")
def features(net) -> dict[str, torch.Tensor]:
    """Random image features of one image with the decoder's shapes (embedding, feat_s0, feat_s1)."""
    g = torch.Generator().manual_seed(2)
    dec = net.sam_mask_decoder
    return {"image": torch.randn(1, 256, 64, 64, generator=g),
            "s0": torch.randn(1, dec.conv_s0.out_channels, 256, 256, generator=g),
            "s1": torch.randn(1, dec.conv_s1.out_channels, 128, 128, generator=g)}


CASES = {
    "1 point": {"points": _points([[[500.0, 400.0]]], [[1]])},
    "20 boxes": {"boxes": _boxes(20, seed=4)},
    "box corners + point": {"points": _points([[[100.0, 100.0], [400.0, 380.0], [200.0, 200.0]]] * 3,
                                              [[2, 3, 1], [2, 3, 0], [2, 3, 1]])},
    "mask input per object": {"boxes": _boxes(3, seed=5),
                              "masks": torch.randn(3, 1, 256, 256, generator=torch.Generator().manual_seed(6)) * 4},
}


def _run(net, features, prompts, multimask: bool, fast: bool):
    boxes = prompts.get("boxes")
    points = prompts.get("points")
    if boxes is not None:  # SAM 2's predictor: a box is two corner points labelled 2, 3
        points = (boxes.reshape(-1, 2, 2), torch.tensor([[2, 3]]).expand(len(boxes), -1))
    with torch.inference_mode():
        sparse, dense = net.sam_prompt_encoder(points=points, boxes=None, masks=prompts.get("masks"))
        pe = net.sam_prompt_encoder.get_dense_pe()
        high_res = [features["s0"], features["s1"]]
        if fast:
            return FastMaskDecoder(net.sam_mask_decoder, chunk_size=8)(features["image"], pe, sparse, dense, multimask,
                                                                      high_res)
        masks, iou, _, _ = net.sam_mask_decoder(features["image"], pe, sparse, dense, multimask,
                                                repeat_image=len(sparse) > 1, high_res_features=high_res)
        return masks, iou


@pytest.mark.parametrize("multimask", [False, True], ids=["single", "multimask"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference(net, features, case, multimask):
    masks, iou = _run(net, features, CASES[case], multimask, fast=True)
    ref_masks, ref_iou = _run(net, features, CASES[case], multimask, fast=False)
    assert masks.shape == ref_masks.shape and iou.shape == ref_iou.shape
    assert _max_err(masks, ref_masks) < ATOL and _max_err(iou, ref_iou) < ATOL


def test_single_mask_falls_back_to_the_most_stable_candidate(net, features):
    """The dynamic fallback really happens here (else the single-mask parity would only cover
    token 0): objects whose token-0 mask is unstable get their best multimask candidate."""
    dec = net.sam_mask_decoder
    assert dec.dynamic_multimask_via_stability and dec.pred_obj_scores and dec.use_high_res_features
    single, single_iou = _run(net, features, CASES["20 boxes"], False, fast=True)
    multi, multi_iou = _run(net, features, CASES["20 boxes"], True, fast=True)
    unstable = dec._get_stability_scores(single) < dec.dynamic_multimask_stability_thresh
    assert unstable.any()
    best = multi_iou.argmax(dim=1)
    for i in torch.nonzero(unstable[:, 0]).flatten().tolist():
        assert _max_err(single[i, 0], multi[i, best[i]]) < ATOL
        assert _max_err(single_iou[i, 0], multi_iou[i, best[i]]) < ATOL
