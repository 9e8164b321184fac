"""Engine vs ``segment_anything.SamPredictor``, side by side, same random vit_b weights.

Run: ``python bench/engine.py [--model vit_b] [--quick]``. Prints one table of times and
ratios ours/reference. Targets on a 2-core CPU: 1-point decode <= 0.25x, 20 boxes <= 0.1x
the reference loop, embed no slower than the reference.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, machine, print_table

from dtseg import SamEngine
from dtseg.engine.checkpoints import RandomWeightsWarning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeat_embed, repeat = (1, 3) if args.quick else (2, 7)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        engine = SamEngine.load(args.model, "random", device="cpu")
    predictor = SamPredictor(engine.model.net)  # the very same weights
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    point, label = np.array([[900.0, 500.0]]), np.array([1])
    xy = rng.uniform([0, 0], [1500, 800], (20, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(50, 400, (20, 2))], axis=1).astype(np.float32)
    counter = iter(range(10**9))

    rows = []

    def row(name: str, ours: float, ref: float, target: str = "") -> None:
        rows.append((name, ours * 1000, ref * 1000, ours / ref, target))

    with torch.inference_mode():
        ref_embed = best_of(lambda: predictor.set_image(image), repeat_embed, warmup=0)
        our_embed = best_of(lambda: engine.embed_image(image, f"new-{next(counter)}"), repeat_embed, warmup=0)
        row("embed 1920x1080", our_embed, ref_embed, "<= 1.0")

        engine.embed_image(image, "bench")
        ref_point = best_of(lambda: predictor.predict(point, label, multimask_output=True), repeat)
        our_point = best_of(lambda: engine.segment_image(image_id="bench", point_coords=point, point_labels=label),
                            repeat)
        row("decode 1 point, multimask", our_point, ref_point, "<= 0.25")

        ref_loop = best_of(lambda: [predictor.predict(box=b, multimask_output=False) for b in boxes],
                           max(1, repeat // 2))
        ref_torch_boxes = torch.as_tensor(predictor.transform.apply_boxes(boxes, predictor.original_size))
        ref_batch = best_of(lambda: predictor.predict_torch(None, None, boxes=ref_torch_boxes, multimask_output=False),
                            max(1, repeat // 2))
        our_boxes = best_of(lambda: engine.segment_image(image_id="bench", boxes=boxes, multimask_output=False), repeat)
        row("20 boxes vs reference loop", our_boxes, ref_loop, "<= 0.1")
        row("20 boxes vs reference predict_torch", our_boxes, ref_batch)

        ref_cold = ref_embed + ref_point
        our_cold = our_embed + our_point
        row("cached segment vs embed+segment (ours)", our_point, our_cold)
        row("embed+segment, 1 point", our_cold, ref_cold)

    print(f"machine: {machine()}; model {args.model}, random weights, 1920x1080 image")
    print_table("engine vs SamPredictor", ["case", "ours ms", "reference ms", "ours/ref", "target"], rows)


if __name__ == "__main__":
    main()
