"""``dtseg video`` end to end: frames/s on a 640x360 synthetic video, and where the time goes.

Run: ``python bench/video.py [--tiny-frames 8] [--vit-b-frames 1]``; ``--memory N`` instead runs N
frames with the tiny SAM and prints the process's RSS along the way and its peak. The detector is YOLOv8n
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
from common import best_of, machine, print_table  # noqa: E402

from dtseg.engine.models import RandomWeightsWarning  # noqa: E402
from dtseg.pipeline import Pipeline  # noqa: E402
from dtseg.video import VideoJob  # noqa: E402
from dtseg.video.jsonl import frame_record  # noqa: E402
from dtseg.video.output import video_annotator  # noqa: E402
from dtseg.video.process import segment_frame  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 30.0
DETECTOR = {"yolo": {"model": "yolov8n.yaml", "conf": 0.0001, "max_det": 5, "imgsz": 640, "device": "cpu"}}


def synthetic_video(path: Path, frames: int) -> Path:
    """Moving coloured shapes on grey (wrapping around), ``WIDTH`` x ``HEIGHT``, mp4v."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for t in range(frames):
        img = np.full((HEIGHT, WIDTH, 3), 70, np.uint8)
        x, y, e = (12 * t) % WIDTH, (8 * t) % HEIGHT, (6 * t) % WIDTH
        cv2.rectangle(img, (x, 60), (x + 100, 160), (40, 40, 220), -1)
        cv2.circle(img, (480, y), 50, (40, 200, 40), -1)
        cv2.ellipse(img, (WIDTH - e, 280), (80, 40), 15, 0, 360, (220, 60, 40), -1)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny-frames", type=int, default=8)
    parser.add_argument("--vit-b-frames", type=int, default=1)
    parser.add_argument("--memory", type=int, metavar="N", help="RSS over N frames with the tiny SAM, then exit")
    args = parser.parse_args()
    warnings.simplefilter("ignore", RandomWeightsWarning)
    if args.memory:
        return memory(args.memory)
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
