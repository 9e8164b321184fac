"""Every family side by side: dtseg's engine vs the family's reference predictor (and ultralytics'
``SAM`` predictor where it has the model), the same random weights on all sides.

Run: ``python bench/models.py [--models vit_b mobile_sam sam2.1_t sam2.1_b+] [--quick]``.
One 1920x1080 image. Rows: embed (and the encoder's FLOPs and its floor at the fp32 matmul
rate measured in the same run), decode 1 point (multimask), 20 boxes (one call vs the
reference's loop). Targets: embed <= 0.5x the reference, 1 point <= 0.25x, 20 boxes <= 0.1x.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, machine, print_table  # noqa: E402

from dtseg import SamEngine  # noqa: E402
from dtseg.errors import RandomWeightsWarning  # noqa: E402

ULTRALYTICS_NAMES = {"mobile_sam": "mobile_sam.pt", "sam2.1_t": "sam2.1_t.pt", "sam2.1_s": "sam2.1_s.pt",
                     "sam2.1_b+": "sam2.1_b.pt", "sam2.1_l": "sam2.1_l.pt"}


def matmul_rate(repeat: int = 3) -> float:
    """fp32 GFLOP/s of ``(4096, 768) @ (768, 3072)`` products (a ViT MLP's shape)."""
    a, b, out = torch.randn(4096, 768), torch.randn(768, 3072), torch.empty(4096, 3072)
    seconds = best_of(lambda: [torch.mm(a, b, out=out) for _ in range(5)], repeat)
    return 5 * 2 * 4096 * 768 * 3072 / seconds / 1e9


def reference(engine: SamEngine) -> Any:
    """The family's own predictor over the engine's very network (``SamPredictor`` / ``SAM2ImagePredictor``)."""
    if engine.family == "sam2.1":
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        return SAM2ImagePredictor(engine.model.net)
    from segment_anything import SamPredictor

    return SamPredictor(engine.model.net)


def ultralytics_predictor(engine: SamEngine, model: str, folder: Path) -> Any | None:
    """ultralytics' ``SAM`` on the same weights, or ``None`` where it has no such model."""
    if model not in ULTRALYTICS_NAMES:
        return None
    from ultralytics import SAM

    path = folder / ULTRALYTICS_NAMES[model]
    state = engine.model.net.state_dict()
    torch.save({"model": state} if engine.family == "sam2.1" else state, path)
    threads = torch.get_num_threads()
    sam = SAM(str(path))
    sam.predict(np.zeros((64, 64, 3), np.uint8), bboxes=[[1, 1, 30, 30]], verbose=False)  # builds its predictor
    torch.set_num_threads(threads)  # ultralytics' device selection sets cpu_count - 1 for the whole process
    return sam.predictor


def encoder_flops(engine: SamEngine, image: np.ndarray) -> float:
    """FLOPs of one encoder pass on ``image`` (FlopCounterMode, an untimed run)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        engine.model.encode(engine.model.preprocess([image], [engine.model.transform(*image.shape[:2])]))
    return float(counter.get_total_flops())


def bench_model(model: str, image: np.ndarray, rate: float, quick: bool, folder: Path) -> list[tuple]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        engine = SamEngine.load(model, "random", device="cpu")
    predictor = reference(engine)
    try:
        ultra = ultralytics_predictor(engine, model, folder)
    except Exception as exc:  # a version of ultralytics without the model, or other key names
        print(f"{model}: ultralytics predictor unavailable: {type(exc).__name__}: {exc}")
        ultra = None
    light = engine.model.parameters_m() < 50
    repeat_embed, repeat = (1, 3) if quick else (2 if light else 1, 5)
    flops = encoder_flops(engine, image)
    counter = iter(range(10**9))
    point, label = np.array([[900.0, 500.0]]), np.array([1])
    rng = np.random.default_rng(0)
    xy = rng.uniform([0, 0], [1500, 800], (20, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(50, 400, (20, 2))], axis=1).astype(np.float32)
    rows = []

    def row(case: str, ours: float, ref: float, ultra_s: float | None, target: str) -> None:
        rows.append((model, case, ours * 1000, ref * 1000, ours / ref,
                     "-" if ultra_s is None else f"{ours / ultra_s:.2f} ({ultra_s * 1000:.0f} ms)", target))

    with torch.inference_mode():
        ref_embed = best_of(lambda: predictor.set_image(image), repeat_embed, warmup=0)
        our_embed = best_of(lambda: engine.embed_image(image, f"new-{next(counter)}"), repeat_embed, warmup=0)
        ultra_embed = None if ultra is None else best_of(lambda: ultra.set_image(image), repeat_embed, warmup=0)
        floor = flops / (rate * 1e9)
        row(f"embed ({flops / 1e9:.0f} GFLOP, floor {floor:.2f} s, ours {our_embed / floor:.2f}x floor)",
            our_embed, ref_embed, ultra_embed, "<= 0.5")
        engine.embed_image(image, "bench")

        def ultra_call(**kwargs: Any) -> Callable[[], object]:
            return lambda: ultra(**kwargs)  # type: ignore[misc]

        ref_point = best_of(lambda: predictor.predict(point_coords=point, point_labels=label, multimask_output=True), repeat)
        our_point = best_of(lambda: engine.segment_image(image_id="bench", point_coords=point, point_labels=label), repeat)
        ultra_point = None if ultra is None else best_of(ultra_call(points=point.tolist(), labels=label.tolist(),
                                                                    multimask_output=True), repeat)
        row("decode 1 point, multimask", our_point, ref_point, ultra_point, "<= 0.25")
        ref_loop = best_of(lambda: [predictor.predict(box=b, multimask_output=False) for b in boxes], max(1, repeat // 2))
        our_boxes = best_of(lambda: engine.segment_image(image_id="bench", boxes=boxes, multimask_output=False), repeat)
        ultra_boxes = None if ultra is None else best_of(ultra_call(bboxes=boxes.tolist()), max(1, repeat // 2))
        row("20 boxes, one call vs reference loop", our_boxes, ref_loop, ultra_boxes, "<= 0.1")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_b", "mobile_sam", "sam2.1_t", "sam2.1_b+"])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    image = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    rate = matmul_rate()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            rows += bench_model(model, image, rate, args.quick, Path(folder))
    print(f"machine: {machine()}; fp32 matmul {rate:.0f} GFLOP/s; random weights, same on every side; 1920x1080")
    print_table("every family vs its reference predictor (and ultralytics' SAM predictor)",
                ["model", "case", "ours ms", "reference ms", "ours/ref", "ours/ultralytics", "target"], rows)


if __name__ == "__main__":
    main()
