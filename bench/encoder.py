"""Benchmark: SAM vit_b image embedding on the CPU, reference vs ``FastImageEncoder``.

Run: ``python bench/encoder.py [--quick]``. Random vit_b weights (timing does not depend on
them), a random 1920x1080 RGB image. Prints one table:

* the measured fp32 matmul rate on the shape of vit_b's MLP linear (4096x768 @ 768x3072),
  timed in the same interleaved rounds as the encoders;
* the encoder's FLOPs, reference and ours, counted with ``torch.utils.flop_counter.FlopCounterMode``
  on the meta device (matmuls, bmm/einsum, attention and convolutions; elementwise ops are not
  counted);
* reference ``SamPredictor.set_image`` vs ours (the engine path: same resize, ``Sam.preprocess``,
  ``FastImageEncoder``), each also as a multiple of the matmul floor = FLOPs / matmul rate;
* ours on a batch of 2 images (per image), as folder runs with ``batch_size: 2`` do;
* int8 (dynamic quantization of the linears) time, its embedding error and mask IoU vs fp32.

Every time is the minimum over repeats, after one warm-up round; the variants are interleaved
(the machine this was written on is shared: see docs/encoder.md).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.build_sam import _build_sam
from torch.utils.flop_counter import FlopCounterMode

from dtseg.engine import SamEngine
from dtseg.families.sam.encoder import fast_encoder
from dtseg.families.sam.family import SamModel
from dtseg.families.transforms import ImageTransform
from dtseg.runtime.threads import configure_threads

VIT_B = dict(encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12, encoder_global_attn_indexes=[2, 5, 8, 11])


MATMUL_FLOPS = 2 * 4096 * 768 * 3072


def matmul_probe() -> Callable[[], object]:
    """Five fp32 ``(4096, 768) @ (768, 3072)`` products (vit_b's MLP up-projection); each run
    of it is timed in the same rounds as the encoders, so the rate sees the same machine load."""
    a, b, out = torch.randn(4096, 768), torch.randn(768, 3072), torch.empty(4096, 3072)

    def run() -> None:
        for _ in range(5):
            torch.mm(a, b, out=out)

    return run


def encoder_flops() -> tuple[float, float]:
    """FLOPs of one vit_b forward at 1024x1024, reference and ours (meta device: nothing is
    computed). Ours is lower: its windowed blocks run no linear layer on the window padding."""
    with torch.device("meta"):
        encoder = _build_sam(**VIT_B, checkpoint=None).image_encoder
    counts = []
    for module in (encoder, fast_encoder(encoder)):
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            module(torch.empty(1, 3, 1024, 1024, device="meta"))
        counts.append(float(counter.get_total_flops()))
    return counts[0], counts[1]


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def int8_mask_iou(sam, fp32: torch.Tensor, q8: torch.Tensor, image: np.ndarray) -> tuple[float, float]:
    """Mean and min mask IoU between masks decoded (by the engine, 20 boxes) from the fp32
    and the int8 embeddings ``(1, 256, 64, 64)`` of ``image``."""
    engine = SamEngine(SamModel(sam, "vit_b"), device=torch.device("cpu"))
    rng = np.random.default_rng(1)
    xy = rng.uniform([0, 0], [1500, 800], (20, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(50, 400, (20, 2))], axis=1)
    masks = []
    for name, embedding in (("fp32", fp32), ("int8", q8)):
        engine.store_embedding(engine.embedding_from_array(embedding[0].float().numpy(), image.shape[:2], name))
        masks.append(engine.segment_image(image_id=name, boxes=boxes, multimask_output=False).masks[:, 0])
    union = np.maximum((masks[0] | masks[1]).sum(axis=(1, 2)), 1)
    iou = (masks[0] & masks[1]).sum(axis=(1, 2)) / union
    return float(iou.mean()), float(iou.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (1 timed call each after warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the CPU quota)")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    threads = configure_threads(args.threads)

    torch.manual_seed(0)
    sam = _build_sam(**VIT_B, checkpoint=None).eval()
    image = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    predictor = SamPredictor(sam)
    fast = fast_encoder(sam.image_encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch.ao's quantization deprecation notice
        int8 = fast_encoder(sam.image_encoder, int8=True)

    def ours(encoder: torch.nn.Module, batch: int = 1) -> Callable[[], torch.Tensor]:
        def embed() -> torch.Tensor:  # what SamEngine._encode does for `batch` images
            transform = ImageTransform.for_image(*image.shape[:2], sam.image_encoder.img_size)
            rgb = torch.from_numpy(transform.resize_image(image).copy()).permute(2, 0, 1)[None]
            with torch.inference_mode():
                return encoder(sam.preprocess(rgb.float()).expand(batch, -1, -1, -1))

        return embed

    variants: dict[str, Callable[[], object]] = {
        "matmul": matmul_probe(),
        "reference": lambda: predictor.set_image(image),
        "ours": ours(fast),
        "int8": ours(int8),
        "batch2": ours(fast, batch=2),
    }
    best = {name: float("inf") for name in variants}
    outputs: dict[str, object] = {}
    for round_ in range(repeats + 1):  # round 0 is the warm-up
        for name, fn in variants.items():
            seconds, outputs[name] = _timed(fn)
            if round_ > 0:
                best[name] = min(best[name], seconds)
    rate = 5 * MATMUL_FLOPS / best["matmul"] / 1e9
    flops, our_flops = encoder_flops()
    floor, our_floor = flops / (rate * 1e9), our_flops / (rate * 1e9)

    reference_embedding = predictor.get_image_embedding()
    fp32, q8 = outputs["ours"].double().flatten(), outputs["int8"].double().flatten()  # type: ignore[union-attr]
    check = (fp32 - reference_embedding.double().flatten()).abs().max().item()
    int8_abs = (q8 - fp32).abs().max().item()
    int8_cos = torch.nn.functional.cosine_similarity(q8, fp32, dim=0).item()
    iou_mean, iou_min = int8_mask_iou(sam, outputs["ours"], outputs["int8"], image)  # type: ignore[arg-type]

    rows = [
        ("threads", f"{threads}", f"{torch.get_num_threads()} intra-op"),
        ("fp32 matmul rate", f"{rate:.1f} GFLOP/s", "4096x768 @ 768x3072, torch.mm"),
        ("encoder FLOPs", f"{flops / 1e12:.3f} TFLOP",
         f"reference vit_b @1024; ours {our_flops / 1e12:.3f} (FlopCounterMode)"),
        ("matmul floor", f"{floor:.2f} s", f"reference FLOPs / matmul rate; ours {our_floor:.2f} s"),
        ("reference set_image", f"{best['reference']:.2f} s", f"{best['reference'] / floor:.2f}x its floor"),
        ("ours (fast, fp32)", f"{best['ours']:.2f} s", f"{best['ours'] / our_floor:.2f}x its floor"),
        ("ours / reference", f"{best['ours'] / best['reference']:.2f}x", f"max abs diff vs reference {check:.1e}"),
        ("ours at its floor", f"{our_floor / best['reference']:.2f}x",
         "of the reference: the lowest ratio our FLOPs allow"),
        ("ours, batch of 2", f"{best['batch2'] / 2:.2f} s/image",
         f"{best['batch2'] / 2 / best['ours']:.2f}x batch of 1"),
        ("ours int8", f"{best['int8']:.2f} s", f"{best['int8'] / our_floor:.2f}x the fp32 floor"),
        ("int8 error vs fp32", f"max abs {int8_abs:.3f}", f"cosine {int8_cos:.5f}"),
        ("int8 mask IoU vs fp32", f"mean {iou_mean:.4f}", f"min {iou_min:.4f} (20 boxes, engine decode)"),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"SAM vit_b image embedding, 1920x1080 image, min of {repeats} after warm-up ({torch.__version__})")
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)).rstrip())


if __name__ == "__main__":
    main()
