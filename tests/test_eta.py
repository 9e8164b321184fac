"""``dtseg.eta``: the encoder-time line a run prints before its first encoder pass."""

from __future__ import annotations

import math
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch

from dtseg.engine import SamEngine
from dtseg.errors import RandomWeightsWarning
from dtseg.eta import FLOOR_FACTOR, embed_estimate, encoder_gflop, matmul_gflops
from dtseg.families import resolve_model


@pytest.mark.parametrize("model", ["vit_b", "vit_l"])
def test_the_rows_flop_count_is_what_torch_counts(model: str) -> None:
    """A model's row holds FlopCounterMode's count of the encoder at 1024 px (on the meta device:
    no arithmetic is done)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from common import flop_counter

    family, arch, _, _ = resolve_model(model)
    with torch.device("meta"):
        net = family.build_net(arch)
    with torch.inference_mode(), flop_counter() as counter:
        net.image_encoder(torch.zeros(1, 3, 1024, 1024, device="meta"))
    assert counter.get_total_flops() / 1e9 == pytest.approx(encoder_gflop(model), rel=1e-3)


def test_the_probe_measures_a_rate() -> None:
    rate = matmul_gflops("cpu", torch.float32)
    assert math.isfinite(rate) and rate > 0.1  # GFLOP/s: even a slow CPU does far more


def test_the_estimate_is_the_flops_over_the_probed_rate() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        engine = SamEngine.load("mobile_sam", "random", device="cpu", dtype="fp32")
    line = embed_estimate(engine)
    found = re.fullmatch(r"the SAM encoder takes ~([\d.]+) s per image on this cpu \(mobile_sam, float32: "
                         r"(\d+) GFLOP at (\d+) GFLOP/s\)", line or "")
    assert found, line
    seconds, gflop, rate = map(float, found.groups())
    assert gflop == round(resolve_model("mobile_sam").official.encoder_gflop)
    assert seconds == pytest.approx(gflop / rate * FLOOR_FACTOR, rel=0.05, abs=0.5)  # as shown: rounded


def test_no_estimate_for_a_model_without_a_flop_count(tiny_sam_engine) -> None:
    assert embed_estimate(tiny_sam_engine) is None  # test-size architecture
    assert embed_estimate(object()) is None  # an engine of another kind


def test_a_fallback_is_estimated_at_the_rate_it_computes_in(no_onednn_kernels) -> None:
    """bf16 without oneDNN's bf16 kernels computes in fp32 (``precision.plan``): the estimate
    names and probes fp32, not the bf16 the features are kept in."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        engine = SamEngine.load("mobile_sam", "random", device="cpu", dtype="bf16")
    assert engine.info()["dtype_path"] == "fallback"
    line = embed_estimate(engine) or ""
    assert "(mobile_sam, float32: " in line, line
