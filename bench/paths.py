"""dtseg's fast passes vs the reference modules on one device, per family and precision: the
comparison that decides ``sam.encoder`` / ``sam.decoder: auto`` (``dtseg.runtime.fast_path``).

Run: ``python bench/paths.py [--models vit_b mobile_sam sam2.1_t] [--dtypes fp32 bf16] [--device cuda] [--quick]``
(``--smoke``: every call once on a 480x270 image, 4 boxes instead of 20: checks the script runs).
Per model and precision, two engines on the same random weights (same seed): one with
``encoder: fast, decoder: fast``, one with ``reference`` for both; everything else (preprocessing,
prompt grouping, mask post-processing) is the engine's on both sides. One 1920x1080 image: embed
time, decode of 1 point (multimask) and of 20 boxes (one call), each fast vs reference, and the
mask IoU of the 20 box masks and of the point's 3 masks fast vs reference. ``switch`` says
``yes`` where the fast passes are faster in all three and the masks agree (IoU >= 0.98): on a
device type that says ``yes`` for every family, adding it to ``fast_path.MEASURED`` is justified.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, machine, print_table

from dtseg import SamEngine
from dtseg.errors import RandomWeightsWarning
from dtseg.runtime.precision import dtype_name, resolve_dtype

#: Masks of the two paths must agree at least this well (mean IoU) for ``switch: yes``.
MIN_IOU = 0.98


def load(model: str, device: torch.device, dtype: str, passes: str) -> SamEngine:
    """An engine on random weights seeded 0 (the same on both sides) running ``passes`` for both parts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load(model, "random", device=device, dtype=dtype, encoder=passes, decoder=passes)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean IoU of boolean masks ``(N, ...)`` pairwise (an empty pair counts 1)."""
    inter = (a & b).reshape(len(a), -1).sum(1)
    union = (a | b).reshape(len(a), -1).sum(1)
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def measure(engine: SamEngine, image: np.ndarray, point: dict, twenty: dict, repeat_embed: int,
            repeat: int, warmup: int) -> tuple[tuple[float, float, float], tuple[np.ndarray, np.ndarray]]:
    """Embed, 1 point and the boxes times (s) of ``engine``, and its masks of the point and the boxes."""
    counter = iter(range(10**9))
    with torch.inference_mode():
        embed = best_of(lambda: engine.embed_image(image, f"new-{next(counter)}", cache=False), repeat_embed, warmup)
        engine.embed_image(image, "bench")
        times = (embed, best_of(lambda: engine.segment_image(**point), repeat, warmup),
                 best_of(lambda: engine.segment_image(**twenty), repeat, warmup))
        return times, (engine.segment_image(**point).masks[0], engine.segment_image(**twenty).masks)


def bench_pair(model: str, dtype: str, device: torch.device, image: np.ndarray, quick: bool,
               smoke: bool = False) -> tuple:
    """One table row: embed, 1 point and 20 boxes (``smoke``: 4, each call once), fast and reference
    (ms), their ratios, mask IoUs. Boxes and point scale with ``image`` ``(H, W, 3)``."""
    rng = np.random.default_rng(0)
    n_boxes, scale = (4 if smoke else 20), image.shape[1] / 1920
    xy = rng.uniform([0, 0], [1500, 800], (n_boxes, 2)) * scale
    boxes = np.concatenate([xy, xy + rng.uniform(50, 400, (n_boxes, 2)) * scale], axis=1).astype(np.float32)
    point = dict(image_id="bench", point_coords=np.array([[900.0, 500.0]]) * scale, point_labels=np.array([1]))
    twenty = dict(image_id="bench", boxes=boxes, multimask_output=False)
    repeat_embed, repeat = (1, 1) if smoke else (1, 3) if quick else (3, 10)
    warmup = 0 if smoke else 1
    times, masks = {}, {}
    for passes in ("fast", "reference"):  # one engine loaded at a time
        times[passes], masks[passes] = measure(load(model, device, dtype, passes), image, point, twenty,
                                               repeat_embed, repeat, warmup)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    ratios = [f / r for f, r in zip(times["fast"], times["reference"], strict=True)]
    iou_point = mask_iou(masks["fast"][0], masks["reference"][0])
    iou_boxes = mask_iou(masks["fast"][1], masks["reference"][1])
    switch = "yes" if max(ratios) < 1 and min(iou_point, iou_boxes) >= MIN_IOU else "no"
    chosen = dtype_name(resolve_dtype(dtype, device))
    cells = [cell for f, r, q in zip(times["fast"], times["reference"], ratios, strict=True)
             for cell in (f * 1000, r * 1000, q)]
    return (model, chosen, *cells, f"{iou_point:.4f}", f"{iou_boxes:.4f}", switch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_b", "mobile_sam", "sam2.1_t", "sam2.1_s"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--smoke", action="store_true",
                        help="every call once on a 480x270 image, 4 boxes: checks the script runs (tests)")
    args = parser.parse_args()
    device = torch.device(args.device)
    height, width = (270, 480) if args.smoke else (1080, 1920)
    n_boxes = 4 if args.smoke else 20
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    rows = [bench_pair(model, dtype, device, image, args.quick, args.smoke)
            for model in args.models for dtype in args.dtypes]
    print(f"machine: {machine()}; device {device}; random weights, the same on both sides; {width}x{height}; "
          "min of N runs" + ("; SMOKE RUN: one run each, not a measurement" if args.smoke else ""))
    print_table(f"fast passes vs reference modules on {device.type} (switch: all faster and mask IoU >= {MIN_IOU})",
                ["model", "dtype", "embed fast ms", "embed ref ms", "fast/ref", "1 point fast ms", "1 point ref ms",
                 "fast/ref", f"{n_boxes} boxes fast ms", f"{n_boxes} boxes ref ms", "fast/ref",
                 "IoU 1 point (3 masks)", f"IoU {n_boxes} boxes", "switch"], rows)


if __name__ == "__main__":
    main()
