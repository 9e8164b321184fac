"""The kept heap's gain and cost (``sam.keep_heap``, ``dtseg/runtime/allocator.py``): the same calls
in processes that keep freed memory in glibc's heap and in processes on glibc's defaults, alternating.

Run: ``python bench/heap.py [--model mobile_sam] [--dtype bf16] [--rounds 4]``. Random weights.
Each round starts one process of each kind, in alternating order (a fresh process: glibc's
defaults are the untouched ones, its mmap threshold adjusting itself at run time); each loads
the engine (``keep_heap=True`` or not), warms up with one embed of a 1920x1080 image and one
20-box decode, then times 3 embeds and 5 decodes and reads its resident size. Prints the best
and median over all processes of a kind, and the resident size. Linux with glibc only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table


def rss_mib() -> float:
    """This process's resident size, MiB (``/proc/self/statm``)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(model: str, dtype: str, keep_heap: bool) -> dict:
    """One process's times (s) of 3 embeds and 5 decodes, and its resident size after them."""
    from dtseg import SamEngine
    from dtseg.errors import RandomWeightsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        engine = SamEngine.load(model, "random", device="cpu", dtype=dtype, keep_heap=keep_heap)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    xy = rng.uniform([0, 0], [1500, 800], (20, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(50, 400, (20, 2))], axis=1).astype(np.float32)
    counter = iter(range(10**9))
    embed = lambda: engine.embed_image(image, f"i{next(counter)}", cache=False)  # noqa: E731
    decode = lambda: engine.segment_image(image_id="bench", boxes=boxes, multimask_output=False)  # noqa: E731
    engine.embed_image(image, "bench")
    decode()
    times = {"embed": [], "20-box decode": []}
    for name, call, n in (("embed", embed, 3), ("20-box decode", decode, 5)):
        for _ in range(n):
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {"times": times, "rss": rss_mib(), "kept": engine.info()["keep_heap"], "summary": engine.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobile_sam")
    parser.add_argument("--dtype", default="bf16", choices=["fp32", "bf16", "fp16", "auto"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--child", choices=["kept", "default"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.dtype, args.child == "kept")))
        return
    runs: dict[str, list[dict]] = {"kept": [], "default": []}
    for round_ in range(args.rounds):
        for kind in (("kept", "default") if round_ % 2 == 0 else ("default", "kept")):
            out = subprocess.run([sys.executable, __file__, "--model", args.model, "--dtype", args.dtype,
                                  "--child", kind], capture_output=True, text=True, check=True)
            runs[kind].append(json.loads(out.stdout.splitlines()[-1]))
    assert all(r["kept"] for r in runs["kept"]) and not any(r["kept"] for r in runs["default"])
    rows = []
    for name in ("embed", "20-box decode"):
        kept = [t for r in runs["kept"] for t in r["times"][name]]
        plain = [t for r in runs["default"] for t in r["times"][name]]
        rows.append((name, min(plain) * 1000, statistics.median(plain) * 1000, min(kept) * 1000,
                     statistics.median(kept) * 1000, statistics.median(kept) / statistics.median(plain)))
    rows.append(("resident MiB after the calls", "-", statistics.median(r["rss"] for r in runs["default"]), "-",
                 statistics.median(r["rss"] for r in runs["kept"]), "-"))
    print(f"machine: {machine()}; {runs['kept'][0]['summary']}; {args.rounds} rounds of one process each, "
          "alternating")
    print_table("kept heap vs glibc's defaults (ms)",
                ["call", "default min", "default median", "kept min", "kept median", "kept/default (median)"], rows)


if __name__ == "__main__":
    main()
