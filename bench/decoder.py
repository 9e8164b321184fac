"""Reference ``MaskDecoder`` vs ``FastMaskDecoder``: N box prompts against one image embedding.

Run: ``python bench/decoder.py [--sizes 1 20 64] [--repeats 3] [--threads T]``. Random weights
(SAM's full-size prompt encoder and decoder; timing does not depend on them). Times are the
minimum over repeats (fewer for large N, at least 2) after a warm-up call, with the two
decoders interleaved so that machine noise hits both alike. GFLOP/obj counts matmuls
(``torch.utils.flop_counter``, on the meta device); max err is the largest |logit| difference.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from segment_anything.build_sam import _build_sam
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import machine
from dtseg.nn.decoder import FastMaskDecoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 20, 64], help="objects per call")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per variant (min is shown)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    sam = _build_sam(
        encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1], checkpoint=None
    ).eval().requires_grad_(False)  # FlopCounterMode's module tracker trips on them
    decoders = {"reference": sam.mask_decoder, "fast": FastMaskDecoder(sam.mask_decoder)}
    on_meta = copy.deepcopy(sam.mask_decoder).to("meta")  # FLOP counts without running
    meta_decoders = {"reference": on_meta, "fast": FastMaskDecoder(on_meta)}
    image, pe = torch.randn(1, 256, 64, 64), sam.prompt_encoder.get_dense_pe()

    print(f"{machine()}; ms = min of repeats")
    print(f"{'N':>3} {'multimask':>9} | {'reference':>9} {'ms/obj':>7} {'GFLOP/obj':>9} "
          f"| {'fast':>7} {'ms/obj':>7} {'GFLOP/obj':>9} | {'speedup':>7} {'max err':>7}")
    for n in args.sizes:
        xy = torch.rand(n, 2) * 800
        boxes = torch.cat([xy, xy + 16 + torch.rand(n, 2) * 200], dim=1)
        repeats = max(2, min(args.repeats, round(args.repeats * 20 / n)))
        for multimask in (False, True):
            with torch.inference_mode():
                sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
                meta_inputs = (image.to("meta"), pe.to("meta"), sparse.to("meta"),
                               dense[:1].to("meta").expand_as(dense))
                outputs, gflop = {}, {}
                for k, dec in decoders.items():
                    with FlopCounterMode(display=False) as counter:
                        meta_decoders[k](*meta_inputs, multimask)
                    gflop[k] = counter.get_total_flops() / 1e9 / n
                    dec(image, pe, sparse[:4], dense[:4], multimask)  # warm-up
                times: dict[str, list[float]] = {k: [] for k in decoders}
                for _ in range(repeats):
                    for k, dec in decoders.items():
                        start = time.perf_counter()
                        outputs[k] = dec(image, pe, sparse, dense, multimask)
                        times[k].append(time.perf_counter() - start)
            ref, fast = (1000 * min(times[k]) for k in ("reference", "fast"))
            err = (outputs["reference"][0] - outputs["fast"][0]).abs().max().item()
            print(
                f"{n:>3} {multimask!s:>9} | {ref:9.0f} {ref / n:7.1f} {gflop['reference']:9.2f} "
                f"| {fast:7.0f} {fast / n:7.1f} {gflop['fast']:9.2f} | {ref / fast:6.2f}x {err:7.0e}"
            )


if __name__ == "__main__":
    main()
