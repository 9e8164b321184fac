"""``dtseg video`` end to end: frames/s on a 640x360 synthetic video, and where the time goes.

Run: ``python bench/video.py [--tiny-frames 8] [--vit-b-frames 1]``; ``--memory N`` instead runs N
frames with the tiny SAM and prints the process's RSS along the way and its peak; ``--modes [N]
[--full]`` instead compares ``video.mode: propagate`` (sam2.1_t, detect every 1/5/15 frames) with
``detect`` (mobile_sam, vit_b) at 640x360 (and 1280x720 with ``--full``): frames/s, time shares,
peak RSS (``--only propagate|detect``: those rows only; ``--dtype``: the SAM precision, default
``auto``). The detector is YOLOv8n
built from ``yolov8n.yaml`` with random weights (conf 1e-4, at most 5 boxes: 5 objects per
frame); SAM is the tiny test architecture and vit_b, both with random weights (timings only).
End to end = ``VideoJob.run`` with tracking, the annotated mp4 and the JSONL. The stage shares
are measured separately on one frame (min of N): detector = the prompt stage, encoder =
``embed_image``, decoder = the batched decode + upsampling from a cached embedding,
annotation = drawing + video encoding + the JSONL line (RLE).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, machine, print_table

from dtseg.engine.checkpoints import RandomWeightsWarning
from dtseg.pipeline import Pipeline
from dtseg.video import VideoJob
from dtseg.video.jsonl import frame_record
from dtseg.video.output import video_annotator
from dtseg.video.process import segment_frame

WIDTH, HEIGHT, FPS = 640, 360, 30.0
DETECTOR = {"yolo": {"model": "yolov8n.yaml", "conf": 0.0001, "max_det": 5, "imgsz": 640, "device": "cpu"}}


def synthetic_video(path: Path, frames: int, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """Moving coloured shapes on grey (wrapping around), ``width`` x ``height``, mp4v."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    k = width / WIDTH
    for t in range(frames):
        img = np.full((height, width, 3), 70, np.uint8)
        x, y, e = int(12 * k * t) % width, int(8 * k * t) % height, int(6 * k * t) % width
        cv2.rectangle(img, (x, int(60 * k)), (x + int(100 * k), int(160 * k)), (40, 40, 220), -1)
        cv2.circle(img, (int(480 * k), y), int(50 * k), (40, 200, 40), -1)
        cv2.ellipse(img, (width - e, int(280 * k)), (int(80 * k), int(40 * k)), 15, 0, 360, (220, 60, 40), -1)
        writer.write(img)
    writer.release()
    return path


def bench_model(model: str, frames: int, video: Path, out: Path) -> list[object]:
    pipeline = Pipeline.from_config({"sam": {"model": model, "checkpoint": "random", "device": "cpu"},
                                     "prompts": [DETECTOR], "sinks": [{"annotated": {}}]})
    engine = pipeline.engine
    job = VideoJob(video, out / f"{model}.mp4", out / f"{model}.jsonl", max_frames=frames, progress=False)
    quick = model != "tiny"  # vit_b on a CPU: ~10-60 s a frame, so no warm-up run and one repeat
    if not quick:
        VideoJob(video, out / "warm.mp4", None, max_frames=1, progress=False).run(pipeline)
    summary = job.run(pipeline)

    frame = cv2.cvtColor(cv2.VideoCapture(str(video)).read()[1], cv2.COLOR_BGR2RGB)
    repeat = 1 if quick else 3
    prompts = pipeline.prompts(frame)
    detector = best_of(lambda: pipeline.prompts(frame), repeat)
    namespaces = iter(range(10**6))  # a new namespace per call: never a cache hit; the last one stays cached
    encoder = best_of(lambda: engine.embed_image(frame, "bench-frame", namespace=f"bench{next(namespaces)}"),
                      repeat, warmup=0)
    cached = f"bench{repeat - 1}"
    decoder = best_of(lambda: engine.segment("bench-frame", prompts, namespace=cached, cache=False), repeat)
    detections = segment_frame(pipeline, frame)
    annotator = video_annotator()
    sink = cv2.VideoWriter(str(out / "annotate.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    annotation = best_of(lambda: (sink.write(annotator.render(frame, detections)),
                                  frame_record(0, 0.0, frame.shape[:2], detections)), repeat)
    sink.release()
    total = detector + encoder + decoder + annotation
    share = [f"{100 * s / total:.0f}%" for s in (detector, encoder, decoder, annotation)]
    return [model, summary.frames, summary.objects / max(1, summary.frames), summary.fps,
            1000 * summary.seconds / max(1, summary.frames), *share]


def memory(frames: int) -> None:
    """RSS after 10%, 50% and 100% of ``frames`` frames, and the peak (``ru_maxrss``)."""
    import psutil

    process, samples = psutil.Process(), {}
    marks = {max(1, frames // 10), frames // 2, frames}
    pipeline = Pipeline.from_config({"sam": {"model": "tiny", "checkpoint": "random", "device": "cpu"},
                                     "prompts": [DETECTOR], "sinks": [{"annotated": {}}]})

    def sample() -> bool:
        done = len(samples.setdefault("all", [])) + 1
        samples["all"].append(process.memory_info().rss)
        if done in marks:
            print(f"frame {done}: RSS {process.memory_info().rss / 2**20:.1f} MiB", flush=True)
        return False

    with tempfile.TemporaryDirectory() as tmp:
        video = synthetic_video(Path(tmp) / "long.mp4", frames)
        summary = VideoJob(video, Path(tmp) / "o.mp4", Path(tmp) / "o.jsonl", progress=False).run(pipeline, sample)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{summary.frames} frames {WIDTH}x{HEIGHT} in {summary.seconds:.0f} s, {summary.objects} objects; "
          f"peak RSS {peak:.1f} MiB; {machine()}")


#: ``--modes``: (mode, SAM model, detect_every) rows; ``detect_every`` only matters for propagate.
MODE_ROWS = [("propagate", "sam2.1_t", 1), ("propagate", "sam2.1_t", 5), ("propagate", "sam2.1_t", 15),
             ("detect", "mobile_sam", 1), ("detect", "vit_b", 1)]


def bench_mode(mode: str, model: str, every: int, size: tuple[int, int], frames: int, out: Path,
               dtype: str = "auto", threads: int | None = None) -> list[object]:
    """One ``VideoJob`` in ``mode`` (random weights, SAM in ``dtype``) after a one-frame warm-up
    run: frames/s, the share of each stage and the peak RSS sampled after every frame (the
    process's, so it includes the models loaded for earlier rows)."""
    import psutil

    from dtseg.config import VideoConfig

    width, height = size
    video = synthetic_video(out / f"in_{width}.mp4", frames + 1, width, height)
    pipeline = Pipeline.from_config({"sam": {"model": model, "checkpoint": "random", "device": "cpu", "dtype": dtype,
                                             "threads": threads},
                                     "prompts": [DETECTOR], "sinks": [{"annotated": {}}]})
    config = VideoConfig(mode=mode, detect_every=every)
    if mode == "propagate":  # random weights say "absent" at random: force "present", so every object costs
        import torch

        head = pipeline.engine.model.net.sam_mask_decoder.pred_obj_score_head
        with torch.no_grad():
            (head.layers[-1] if hasattr(head, "layers") else head).bias.fill_(10.0)
    process, peak = psutil.Process(), [0]

    def sample() -> bool:
        peak[0] = max(peak[0], process.memory_info().rss)
        return False

    VideoJob(video, out / "warm.mp4", None, max_frames=1, progress=False, video=config).run(pipeline)  # warm-up
    summary = VideoJob(video, out / "m.mp4", out / "m.jsonl", max_frames=frames, progress=False,
                       video=config).run(pipeline, sample)
    st = summary.stage_seconds
    if mode == "propagate":
        parts = (st.get("detect", 0.0), st.get("encode", 0.0), st.get("propagate", 0.0), st.get("write", 0.0))
    else:  # the detector, encoder and decoder run as one call per frame here
        parts = (st.get("segment", 0.0), 0.0, st.get("track", 0.0), st.get("write", 0.0))
    total = sum(parts) or 1.0
    shares = [f"{100 * p / total:.0f}%" for p in parts]
    if mode == "detect":
        shares[0], shares[1] = f"{shares[0]} (det+enc+dec)", "-"
    return [mode, model, every if mode == "propagate" else "-", f"{width}x{height}", summary.frames,
            summary.objects / max(1, summary.frames), summary.fps, *shares, peak[0] / 2**20]


def modes_table(frames: int, sizes: list[tuple[int, int]], rows: list[tuple[str, str, int]], dtype: str = "auto",
                threads: int | None = None) -> None:
    started = time.perf_counter()
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for mode, model, every in rows:
                table.append(bench_mode(mode, model, every, size, frames, Path(tmp), dtype, threads))
                print(table[-1], flush=True)
    print_table(f"dtseg video modes, YOLOv8n (random, 5 boxes) + SAM (random, dtype {dtype}, "
                f"threads {threads or 'auto'}), CPU: {machine()}",
                ["mode", "SAM", "detect every", "size", "frames", "objects/frame", "frames/s", "detector",
                 "encoder", "memory attn + decoder", "writing", "peak RSS MiB"], table)
    print(f"\n(whole table {time.perf_counter() - started:.0f} s; propagate's 'memory attn + decoder' also holds "
          "keyframe previews and conditioning; detect mode's ByteTrack is in that column)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny-frames", type=int, default=8)
    parser.add_argument("--vit-b-frames", type=int, default=1)
    parser.add_argument("--memory", type=int, metavar="N", help="RSS over N frames with the tiny SAM, then exit")
    parser.add_argument("--modes", type=int, metavar="N", nargs="?", const=3,
                        help="the detect-vs-propagate table instead: N frames per row (default 3) of propagate "
                             "with sam2.1_t (detect every 1, 5, 15) and detect with mobile_sam, vit_b, at 640x360")
    parser.add_argument("--full", action="store_true", help="with --modes: also at 1280x720")
    parser.add_argument("--only", choices=("propagate", "detect"), help="with --modes: only that mode's rows")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="with --modes: SAM's precision (sam.dtype)")
    parser.add_argument("--threads", type=int,
                        help="with --modes: torch CPU threads (sam.threads; default: the CPU quota)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", RandomWeightsWarning)
    if args.memory:
        memory(args.memory)
        return
    if args.modes:
        sizes = [(640, 360), (1280, 720)] if args.full else [(640, 360)]
        rows = [row for row in MODE_ROWS if args.only in (None, row[0])]
        modes_table(args.modes, sizes, rows, args.dtype, args.threads)
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        video = synthetic_video(out / "synthetic.mp4", max(args.tiny_frames, args.vit_b_frames) + 1)
        rows = [bench_model(model, n, video, out) for model, n in (("tiny", args.tiny_frames),
                                                                   ("vit_b", args.vit_b_frames)) if n > 0]
    print_table(f"dtseg video, {WIDTH}x{HEIGHT}, YOLOv8n (random) + SAM (random), CPU: {machine()}",
                ["SAM", "frames", "objects/frame", "frames/s", "ms/frame", "detector", "encoder", "decoder",
                 "annotation"], rows)
    print(f"\n(stage shares from one frame, min of N; whole bench {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
