"""Every family side by side: dtseg's engine vs the family's reference predictor (and ultralytics'
``SAM`` predictor where it has the model), the same random weights on all sides, in each precision.

Run: ``python bench/models.py [--models vit_b mobile_sam sam3] [--dtypes fp32 auto] [--device cpu|cuda] [--quick]``
(``--smoke``: every row once on a small problem, 4 boxes instead of 20: checks the script runs).
One 1920x1080 image. The machine line names the CPU and its AVX2 / AVX-512 / AVX512-BF16 / AMX;
the matmul rate of each precision the engines compute in is measured in the same run (a
precision without oneDNN kernels on this CPU falls back to fp32 compute: ``precision.plan``, its
rows say so and use the fp32 rate). Per model and precision: embed
time, the encoder's FLOPs and its floor (FLOPs / that precision's matmul rate), ratio to the
floor, to the reference predictor (fp32) and to ultralytics' (fp32), and the mask IoU of 20 box
masks against fp32's. Then decode 1 point (multimask) and 20 boxes (one call vs the reference's
loop) in each precision, with the decode's FLOP floor and the time of its kernels alone
(``common.ops_alone``). Targets: embed <= 1.3x floor (vit_b), <= 2x (light encoders);
1 point <= 0.25x, 20 boxes <= 0.1x the reference.

A SAM 3 model (``sam3``, ``tiny_sam3``; not in the default ``--models``: the full size takes
minutes per image on a CPU, ``bench/gpu.sh`` runs it) gets its own table against Meta's
``Sam3Processor`` (fp32, the same network): embed, 1 phrase, 5 phrases (Meta's: one
``set_text_prompt`` each; both encode the phrases every call, dtseg's phrase LRU cleared), 1 click
(Meta's ``predict_inst``), each with its FLOPs and floor. ultralytics' ``SAM3SemanticPredictor``
is not compared: it builds the official architecture only and imports ``clip``, which it installs
from GitHub.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, flop_counter, machine, ops_alone, print_table

from dtseg import SamEngine
from dtseg.errors import RandomWeightsWarning
from dtseg.families import resolve_model
from dtseg.runtime.precision import dtype_name, plan, resolve_dtype

#: The phrases of the SAM 3 rows (the first alone for "1 phrase").
PHRASES = ["person", "red car", "dog", "traffic light", "bicycle"]
ULTRALYTICS_NAMES = {"mobile_sam": "mobile_sam.pt", "sam2.1_t": "sam2.1_t.pt", "sam2.1_s": "sam2.1_s.pt",
                     "sam2.1_b+": "sam2.1_b.pt", "sam2.1_l": "sam2.1_l.pt"}


def matmul_rate(dtype: torch.dtype, device: torch.device, repeat: int = 10, warmup_s: float = 1.0,
                rows: int = 4096) -> float:
    """GFLOP/s of ``(rows, 768) @ (768, 3072)`` products in ``dtype`` (a ViT MLP's shape): the
    best of ``repeat`` runs of ~0.2 s after ``warmup_s`` of warm-up (a cold or briefly disturbed
    probe reads low, and every "x floor" would then read low with it)."""
    a, b = torch.randn(rows, 768, device=device, dtype=dtype), torch.randn(768, 3072, device=device, dtype=dtype)
    out = torch.empty(rows, 3072, device=device, dtype=dtype)
    once = best_of(lambda: torch.mm(a, b, out=out), 1)
    n = max(1, round(0.2 / max(once, 1e-6)))  # a run of ~0.2 s, whatever the rate
    deadline = time.perf_counter() + warmup_s
    while time.perf_counter() < deadline:
        torch.mm(a, b, out=out)
    seconds = best_of(lambda: [torch.mm(a, b, out=out) for _ in range(n)], repeat)
    return n * 2 * rows * 768 * 3072 / seconds / 1e9


def load(model: str, device: torch.device, dtype: str) -> SamEngine:
    """An engine running dtseg's fast passes, also where ``auto`` would keep the reference (a GPU)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load(model, "random", device=device, dtype=dtype, encoder="fast", decoder="fast")


def precisions(engine: SamEngine, model: str, dtypes: list[str], device: torch.device
               ) -> Iterator[tuple[SamEngine, str, str]]:
    """For each of ``dtypes``: an engine of ``model`` in that precision (``engine``, the fp32 one,
    where it resolves to float32), its rows' label (the precision, and how it computes where that
    differs) and the dtype it computes in (a key of the matmul rates)."""
    for dtype in dtypes:
        chosen = dtype_name(resolve_dtype(dtype, device))
        low = engine if chosen == "float32" else load(model, device, dtype)
        compute, path = low.info()["compute_dtype"], low.info()["dtype_path"]
        label = (f"{dtype} ({chosen})" if dtype == "auto" else chosen) + {
            "native": "", "emulated": " (emulated)", "fallback": f" ({compute} compute)"}[path]
        yield low, label, compute


def reference(engine: SamEngine) -> Any:
    """The family's own predictor over the engine's very network (``SamPredictor`` / ``SAM2ImagePredictor``)."""
    if engine.capabilities.lineage == "sam2":
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
    torch.save({"model": state} if engine.capabilities.lineage == "sam2" else state, path)
    threads = torch.get_num_threads()
    sam = SAM(str(path))
    sam.predict(np.zeros((64, 64, 3), np.uint8), bboxes=[[1, 1, 30, 30]], verbose=False)  # builds its predictor
    torch.set_num_threads(threads)  # ultralytics' device selection sets cpu_count - 1 for the whole process
    return sam.predictor


def call_flops(fn: Callable[[], object]) -> float:
    """FLOPs of one call of ``fn`` (FlopCounterMode, an untimed run)."""
    with torch.inference_mode(), flop_counter() as counter:
        fn()
    return float(counter.get_total_flops())


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean IoU of boolean masks ``(N, ...)`` pairwise (an empty pair counts 1)."""
    inter = (a & b).reshape(len(a), -1).sum(1)
    union = (a | b).reshape(len(a), -1).sum(1)
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def bench_model(model: str, image: np.ndarray, rates: dict[str, float], dtypes: list[str], device: torch.device,
                quick: bool, folder: Path, smoke: bool = False) -> tuple[list[tuple], list[tuple]]:
    """Embed rows (one per precision) and decode rows of ``model``; ``smoke``: one run of each."""
    engine = load(model, device, "fp32")
    predictor = reference(engine)
    try:
        ultra = ultralytics_predictor(engine, model, folder)
    except Exception as exc:  # noqa: BLE001 - a version of ultralytics without the model, or other key names
        print(f"{model}: ultralytics predictor unavailable: {type(exc).__name__}: {exc}")
        ultra = None
    light = engine.model.parameters_m() < 50
    repeat_embed, repeat = (1, 1) if smoke else (1, 3) if quick else (2 if light else 1, 5)
    warmup = 0 if smoke else 1
    counter = iter(range(10**9))
    scale = image.shape[1] / 1920  # the prompts are placed for 1920x1080
    point, label = np.array([[900.0, 500.0]]) * scale, np.array([1])
    rng = np.random.default_rng(0)
    n_boxes = 4 if smoke else 20
    xy = rng.uniform([0, 0], [1500, 800], (n_boxes, 2))
    boxes = (np.concatenate([xy, xy + rng.uniform(50, 400, (n_boxes, 2))], axis=1) * scale).astype(np.float32)
    flops = call_flops(lambda: engine.model.embed([image], [engine.model.transform(*image.shape[:2])]))
    embed_rows, decode_rows = [], []

    with torch.inference_mode():
        ref_embed = best_of(lambda: predictor.set_image(image), repeat_embed, warmup=0)
        ultra_embed = None if ultra is None else best_of(lambda: ultra.set_image(image), repeat_embed, warmup=0)
        engine.embed_image(image, "bench")
        fp32_masks = engine.segment_image(image_id="bench", boxes=boxes, multimask_output=False).masks
        one_point = dict(image_id="bench", point_coords=point, point_labels=label)
        many = dict(image_id="bench", boxes=boxes, multimask_output=False)

        def ultra_call(**kwargs: Any) -> Callable[[], object]:
            return lambda: ultra(**kwargs)  # type: ignore[misc]

        ref_point = best_of(lambda: predictor.predict(point_coords=point, point_labels=label, multimask_output=True),
                            repeat, warmup)
        ref_loop = best_of(lambda: [predictor.predict(box=b, multimask_output=False) for b in boxes],
                           max(1, repeat // 2), warmup)
        ultra_point = None if ultra is None else best_of(ultra_call(points=point.tolist(), labels=label.tolist(),
                                                                    multimask_output=True), repeat)
        ultra_boxes = None if ultra is None else best_of(ultra_call(bboxes=boxes.tolist()), max(1, repeat // 2))
        cases = [  # (case, its segment_image arguments, runs, reference s, ultralytics s, GFLOP, target)
            ("decode 1 point, multimask", one_point, repeat, ref_point, ultra_point,
             call_flops(lambda: engine.segment_image(**one_point)) / 1e9, "<= 0.25"),
            (f"{n_boxes} boxes, one call vs reference loop", many, max(1 if smoke else 2, repeat // 2), ref_loop,
             ultra_boxes, call_flops(lambda: engine.segment_image(**many)) / 1e9, "<= 0.1"),
        ]

        for low, label_, compute in precisions(engine, model, dtypes, device):
            ours = best_of(lambda: low.embed_image(image, f"new-{next(counter)}"),  # noqa: B023 - called here
                           repeat_embed, warmup=warmup)
            low.embed_image(image, "bench")
            iou = mask_iou(low.segment_image(**many).masks, fp32_masks)
            floor = flops / (rates[compute] * 1e9)
            versus_ultra = "-" if ultra_embed is None else f"{ours / ultra_embed:.2f} ({ultra_embed * 1000:.0f} ms)"
            embed_rows.append((model, label_, f"{flops / 1e9:.0f}", ours * 1000, floor * 1000, ours / floor,
                               ours / ref_embed, versus_ultra, f"{iou:.4f}"))
            for case, kwargs, n, ref, ultra_s, gflop, target in cases:
                decode = functools.partial(low.segment_image, **kwargs)
                ours_s = best_of(decode, n, warmup)
                kernels, ops = ops_alone(decode, 1 if smoke else 5)
                decode_rows.append((model, label_, case, ours_s * 1000, ref * 1000, ours_s / ref,
                                    "-" if ultra_s is None else f"{ours_s / ultra_s:.2f} ({ultra_s * 1000:.0f} ms)",
                                    f"{gflop:.1f}", gflop / rates[compute] * 1000, f"{kernels * 1000:.1f} ({ops})",
                                    target))
    return embed_rows, decode_rows


def bench_sam3(model: str, image: np.ndarray, rates: dict[str, float], dtypes: list[str], device: torch.device,
               quick: bool, smoke: bool = False) -> list[tuple]:
    """Rows of a SAM 3 model: embed, 1 phrase, 5 phrases, 1 click (multimask) in each precision
    vs Meta's ``Sam3Processor`` (fp32, threshold 0.5 as its default) on the same network; the
    click's masks in each precision against fp32's (mask IoU)."""
    from PIL import Image
    from sam3.model.sam3_image_processor import Sam3Processor

    from dtseg.families.sam3.net import on_device

    engine = load(model, device, "fp32")
    net = engine.model.net
    repeat = 1 if smoke else 2 if quick else 3
    warmup = 0 if smoke else 1
    point, label = np.array([[900.0, 500.0]]) * image.shape[1] / 1920, np.array([1])
    pil = Image.fromarray(image)
    with torch.inference_mode(), on_device(device):
        processor = Sam3Processor(net, resolution=engine.model.input_length, device=device.type)
        ref_embed = best_of(lambda: processor.set_image(pil), repeat, warmup=0)
        state = processor.set_image(pil)

        def ref_phrases(phrases: list[str]) -> Callable[[], object]:
            def run() -> None:
                for phrase in phrases:
                    processor.reset_all_prompts(state)
                    processor.set_text_prompt(phrase, state)
            return run

        reference_s = {"embed": ref_embed,
                       "1 phrase": best_of(ref_phrases(PHRASES[:1]), repeat, warmup),
                       "5 phrases": best_of(ref_phrases(PHRASES), repeat, warmup),
                       "1 click, multimask": best_of(lambda: net.predict_inst(
                           state, point_coords=point, point_labels=label, multimask_output=True), repeat, warmup)}
    counter = iter(range(10**9))
    rows, fp32_masks = [], None
    for low, label_, compute in precisions(engine, model, dtypes, device):
        low.embed_image(image, "bench")

        def concepts(phrases: list[str], engine_: SamEngine = low) -> Callable[[], object]:
            def run() -> object:
                engine_.model.phrases.clear()  # every call encodes its phrases, as Meta's does
                return engine_.segment_concepts(image_id="bench", concepts=phrases)
            return run

        calls: dict[str, Callable[[], object]] = {
            "embed": lambda: low.embed_image(image, f"new-{next(counter)}"),  # noqa: B023 - called in this pass
            "1 phrase": concepts(PHRASES[:1]),
            "5 phrases": concepts(PHRASES),
            "1 click, multimask": functools.partial(low.segment_image, image_id="bench", point_coords=point,
                                                    point_labels=label, multimask_output=True)}
        with torch.inference_mode():
            masks = low.segment_image(image_id="bench", point_coords=point, point_labels=label,
                                      multimask_output=True).masks
            fp32_masks = masks if fp32_masks is None else fp32_masks
            for case, call in calls.items():
                gflop = call_flops(call) / 1e9
                ours = best_of(call, repeat, warmup)
                floor = gflop / rates[compute]
                iou = f"{mask_iou(masks, fp32_masks):.4f}" if case.startswith("1 click") else "-"
                rows.append((model, label_, case, ours * 1000, reference_s[case] * 1000, ours / reference_s[case],
                             f"{gflop:.1f}", floor * 1000, ours / floor, iou))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_b", "mobile_sam", "sam2.1_t", "sam2.1_s"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["auto", "fp32", "bf16", "fp16"],
                        help="precisions of the embed rows (fp32 is always the reference for mask IoU)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--smoke", action="store_true",
                        help="every row once on a 480x270 image, 4 boxes, a short matmul probe: "
                             "checks the script runs (tests)")
    args = parser.parse_args()
    device = torch.device(args.device)
    height, width = (270, 480) if args.smoke else (1080, 1920)
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    computes = {torch.float32} | {plan(device, resolve_dtype(d, device)).compute for d in args.dtypes}
    if device.type == "cuda":
        computes |= {torch.bfloat16, torch.float16}
    probe = dict(repeat=1, warmup_s=0.0, rows=512) if args.smoke else {}
    rates = {dtype_name(dt): matmul_rate(dt, device, **probe)
             for dt in (torch.float32, torch.bfloat16, torch.float16) if dt in computes}
    embed_rows, decode_rows, sam3_rows = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            if resolve_model(model)[0].capabilities.lineage == "sam3":
                sam3_rows += bench_sam3(model, image, rates, args.dtypes, device, args.quick, args.smoke)
                continue
            embed, decode = bench_model(model, image, rates, args.dtypes, device, args.quick, Path(folder), args.smoke)
            embed_rows += embed
            decode_rows += decode
    print(f"machine: {machine()}; device {device}; matmul GFLOP/s: "
          + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
          + f"; auto -> {dtype_name(resolve_dtype('auto', device))}; random weights, same on every side; "
            f"{width}x{height}; min of N runs" + ("; SMOKE RUN: one run each, not a measurement" if args.smoke else ""))
    if embed_rows:
        print_table("embed: each precision vs its floor, the fp32 reference and ultralytics (fp32)",
                    ["model", "dtype", "GFLOP", "ours ms", "floor ms", "x floor", "x reference", "x ultralytics",
                     "mask IoU vs fp32"], embed_rows)
        print_table("decode in each precision vs the reference predictor (fp32); floor = the decode's FLOPs at that "
                    "precision's matmul rate (what no arrangement of the work can beat); kernels = the decode's aten "
                    "ops each run alone, summed (what is left without overhead, short of fusing kernels; the mask "
                    "post-processing in OpenCV is outside it)",
                    ["model", "dtype", "case", "ours ms", "reference ms", "ours/ref", "ours/ultralytics", "GFLOP",
                     "floor ms", "kernels ms (ops)", "target"], decode_rows)
    if sam3_rows:
        print_table("SAM 3 in each precision vs Meta's Sam3Processor (fp32, the same network); phrases encoded in "
                    "every call on both sides; floor = the call's FLOPs at that precision's matmul rate",
                    ["model", "dtype", "case", "ours ms", "Meta ms", "ours/Meta", "GFLOP", "floor ms", "x floor",
                     "click mask IoU vs fp32"], sam3_rows)


if __name__ == "__main__":
    main()
