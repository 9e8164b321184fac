"""FastMaskDecoder: parity with segment_anything's MaskDecoder on seeded random weights."""

from __future__ import annotations

import copy

import pytest
import torch
from segment_anything.build_sam import _build_sam
from segment_anything.modeling import Sam
from torch.utils.flop_counter import FlopCounterMode

from dtseg.nn.decoder import FastMaskDecoder

ATOL = 1e-4  # low-res logits and IoU, absolute

Prompts = dict[str, torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None]


@pytest.fixture(scope="module")
def sam() -> Sam:
    """Tiny image encoder; the prompt encoder and mask decoder are SAM's full-size ones."""
    torch.manual_seed(0)
    model = _build_sam(
        encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1], checkpoint=None
    )
    return model.eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """An image embedding ``(1, 256, 64, 64)``."""
    return torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(1))


def _boxes(n: int, seed: int) -> torch.Tensor:
    """``(n, 4)`` random xyxy boxes in the 1024x1024 input frame."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 800
    return torch.cat([xy, xy + 16 + torch.rand(n, 2, generator=g) * 200], dim=1)


def _points(coords: list[list[list[float]]], labels: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(coords, dtype=torch.float32), torch.tensor(labels)


CASES: dict[str, Prompts] = {
    "1 point": {"points": _points([[[500.0, 400.0]]], [[1]])},
    "points, negative and padding": {
        "points": _points(
            [[[100.0, 120.0], [300.0, 310.0], [700.0, 20.0], [0.0, 0.0]],
             [[900.0, 900.0], [10.0, 1000.0], [512.0, 512.0], [64.0, 64.0]]],
            [[1, 0, 1, -1], [1, 1, 0, 0]],
        )
    },
    "1 box": {"boxes": _boxes(1, seed=2)},
    "box + point": {"boxes": _boxes(3, seed=3), "points": _points([[[200.0, 200.0]]] * 3, [[1], [0], [1]])},
    "20 boxes": {"boxes": _boxes(20, seed=4)},
    "mask input per object": {
        "boxes": _boxes(4, seed=5),
        "masks": torch.randn(4, 1, 256, 256, generator=torch.Generator().manual_seed(6)) * 4,
    },
    "1 box + mask input": {
        "boxes": _boxes(1, seed=7),
        "masks": torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(8)) * 4,
    },
}


def _embed(sam: Sam, prompts: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse ``(N, T', 256)`` and dense ``(N, 256, 64, 64)`` embeddings from SAM's prompt encoder."""
    return sam.prompt_encoder(points=prompts.get("points"), boxes=prompts.get("boxes"), masks=prompts.get("masks"))


def _decode(decoder: torch.nn.Module, sam: Sam, image: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor,
            multimask: bool):
    with torch.inference_mode():
        return decoder(image, sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask)


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item() if a.numel() else 0.0


@pytest.fixture(scope="module")
def reference(sam: Sam, image: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Memoized ``MaskDecoder.predict_masks`` per case: all 4 masks ``(N, 4, 256, 256)`` and IoUs ``(N, 4)``.

    ``MaskDecoder.forward`` is this plus a slice (``[:, 1:]`` multimask, else ``[:, :1]``);
    one reference run serves both modes (it is the slow part of these tests).
    """
    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(case: str) -> tuple[torch.Tensor, torch.Tensor]:
        if case not in cache:
            with torch.inference_mode():
                sparse, dense = _embed(sam, CASES[case])
                pe = sam.prompt_encoder.get_dense_pe()
                cache[case] = sam.mask_decoder.predict_masks(image, pe, sparse, dense)
        return cache[case]

    return get


@pytest.mark.parametrize("multimask", [False, True], ids=["single", "multimask"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference(sam: Sam, image: torch.Tensor, reference, case: str, multimask: bool) -> None:
    with torch.inference_mode():
        sparse, dense = _embed(sam, CASES[case])
    all_masks, all_iou = reference(case)
    selected = slice(1, None) if multimask else slice(0, 1)
    ref_masks, ref_iou = all_masks[:, selected], all_iou[:, selected]
    masks, iou = _decode(FastMaskDecoder(sam.mask_decoder, chunk_size=8), sam, image, sparse, dense, multimask)

    m = 3 if multimask else 1
    assert masks.shape == ref_masks.shape == (len(sparse), m, 256, 256)
    assert iou.shape == ref_iou.shape == (len(sparse), m)
    assert _max_err(masks, ref_masks) < ATOL
    assert _max_err(iou, ref_iou) < ATOL


def test_reference_forward_is_predict_masks_sliced(sam: Sam, image: torch.Tensor, reference) -> None:
    """Guards the shortcut of the ``reference`` fixture."""
    with torch.inference_mode():
        sparse, dense = _embed(sam, CASES["1 box"])
    all_masks, all_iou = reference("1 box")
    for multimask, selected in ((False, slice(0, 1)), (True, slice(1, None))):
        masks, iou = _decode(sam.mask_decoder, sam, image, sparse, dense, multimask)
        assert torch.equal(masks, all_masks[:, selected]) and torch.equal(iou, all_iou[:, selected])


def test_shared_dense_batch_one_and_chunks(sam: Sam, image: torch.Tensor) -> None:
    """A ``(1, C, h, w)`` dense embedding is shared; chunking does not change results."""
    with torch.inference_mode():
        sparse, dense = _embed(sam, {"boxes": _boxes(5, seed=9)})
    ref_masks, ref_iou = _decode(sam.mask_decoder, sam, image, sparse, dense, False)
    for chunk_size in (2, 8):
        decoder = FastMaskDecoder(sam.mask_decoder, chunk_size)
        masks, iou = _decode(decoder, sam, image, sparse, dense[:1].contiguous(), False)
        assert _max_err(masks, ref_masks) < ATOL and _max_err(iou, ref_iou) < ATOL


def test_other_spatial_size(sam: Sam) -> None:
    """Nothing assumes SAM's 64x64 embedding grid."""
    image = torch.randn(1, 256, 32, 48, generator=torch.Generator().manual_seed(10))
    pe = sam.prompt_encoder.pe_layer((32, 48))[None]
    with torch.inference_mode():
        sparse, _ = _embed(sam, {"boxes": _boxes(3, seed=11)})
        dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(3, -1, 32, 48)
        ref = sam.mask_decoder(image, pe, sparse, dense, True)
        out = FastMaskDecoder(sam.mask_decoder)(image, pe, sparse, dense, True)
    assert out[0].shape == ref[0].shape == (3, 3, 128, 192)
    assert _max_err(out[0], ref[0]) < ATOL and _max_err(out[1], ref[1]) < ATOL


@pytest.mark.parametrize("multimask", [False, True])
def test_empty_batch(sam: Sam, image: torch.Tensor, multimask: bool) -> None:
    sparse, dense = torch.empty(0, 2, 256), torch.empty(0, 256, 64, 64)
    masks, iou = _decode(FastMaskDecoder(sam.mask_decoder), sam, image, sparse, dense, multimask)
    m = 3 if multimask else 1
    assert masks.shape == (0, m, 256, 256) and iou.shape == (0, m)
    assert masks.dtype == iou.dtype == torch.float32


def test_objects_are_independent(sam: Sam, image: torch.Tensor) -> None:
    """Object i's result depends only on prompt i: alone, in a batch, in any order, in any chunk."""
    fast = FastMaskDecoder(sam.mask_decoder, chunk_size=4)
    with torch.inference_mode():
        sparse, dense = _embed(sam, {"boxes": _boxes(6, seed=12)})
    masks, iou = _decode(fast, sam, image, sparse, dense, True)
    order = torch.randperm(6, generator=torch.Generator().manual_seed(13))
    masks_perm, iou_perm = _decode(fast, sam, image, sparse[order], dense[order], True)
    assert _max_err(masks_perm, masks[order]) < 1e-5 and _max_err(iou_perm, iou[order]) < 1e-5
    for i in (0, 5):
        alone_masks, alone_iou = _decode(fast, sam, image, sparse[i : i + 1], dense[i : i + 1], True)
        assert _max_err(alone_masks[0], masks[i]) < 1e-5 and _max_err(alone_iou[0], iou[i]) < 1e-5


def test_shares_parameters(sam: Sam) -> None:
    """No copies: the wrapped decoder's parameters are the fast decoder's, so checkpoints load into either."""
    fast = FastMaskDecoder(sam.mask_decoder)
    ref_params = {id(p) for p in sam.mask_decoder.parameters()}
    assert {id(p) for p in fast.parameters()} == ref_params
    assert {k.removeprefix("decoder.") for k in fast.state_dict()} == set(sam.mask_decoder.state_dict())


def test_rejects_image_batch(sam: Sam, image: torch.Tensor) -> None:
    with torch.inference_mode(), pytest.raises(ValueError, match="one image embedding"):
        sparse, dense = _embed(sam, {"boxes": _boxes(2, seed=14)})
        FastMaskDecoder(sam.mask_decoder)(image.expand(2, -1, -1, -1), sam.prompt_encoder.get_dense_pe(), sparse, dense,
                                          False)


@pytest.mark.parametrize("model", ["tiny", "tiny_sam2.1"])
def test_layouts_derived_once_per_image_and_never_stale(model: str, monkeypatch) -> None:
    """A second call on the same image reuses what the decoder derived from it (pixel-major
    image, the shared first block's projections, SAM 2's high-res rows); a call on another image
    derives them anew and decodes like a fresh engine does."""
    import warnings

    import numpy as np

    from dtseg import SamEngine
    from dtseg.nn import decoder as module
    from tests.tiny import synthetic_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine, fresh = (SamEngine.load(model, "random", seed=3) for _ in range(2))
    derived = []
    real = module._pixels
    monkeypatch.setattr(module, "_pixels", lambda x: derived.append(x.shape) or real(x))
    projected = []
    project = module._SharedImage.project
    monkeypatch.setattr(module._SharedImage, "project", lambda *a: projected.append(1) or project(*a))
    prompts = {"point_coords": [[120.0, 90.0]], "point_labels": [1]}
    engine.embed_image(synthetic_image(240, 320, seed=1), "a")
    engine.embed_image(synthetic_image(240, 320, seed=2), "b")
    engine.segment_image(image_id="a", **prompts)
    first = len(derived)
    assert first == 2  # the positional encoding and image a
    assert len(projected) == 1
    engine.segment_image(image_id="a", **prompts)
    assert len(derived) == first and len(projected) == 1  # nothing derived again
    ours = engine.segment_image(image_id="b", **prompts)
    assert len(derived) == first + 1 and len(projected) == 2  # image b only
    fresh.embed_image(synthetic_image(240, 320, seed=2), "b")
    expected = fresh.segment_image(image_id="b", **prompts)
    np.testing.assert_array_equal(ours.masks, expected.masks)
    np.testing.assert_allclose(ours.low_res_logits, expected.low_res_logits, atol=1e-6)


@pytest.mark.parametrize("n", [1, 20])
def test_runs_on_meta_tensors_for_flop_counting(sam: Sam, image: torch.Tensor, n: int) -> None:
    """``bench/decoder.py`` counts FLOPs with the decoder on the meta device: shapes only, no data."""
    with torch.inference_mode():
        sparse, dense = _embed(sam, {"boxes": _boxes(n, seed=15)})
        on_meta = FastMaskDecoder(copy.deepcopy(sam.mask_decoder).to("meta"))
        inputs = (image.to("meta"), sam.prompt_encoder.get_dense_pe().to("meta"), sparse.to("meta"),
                  dense[:1].to("meta").expand_as(dense))
        with FlopCounterMode(display=False) as counter:
            masks, ious = on_meta(*inputs, True)
    assert masks.shape == (n, 3, 256, 256) and ious.shape == (n, 3)
    assert counter.get_total_flops() > 0
