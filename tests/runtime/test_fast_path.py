"""Which passes run: ``auto`` keeps the reference modules on devices the fast ones were never
benchmarked on; ``fast``/``reference`` are honoured; engines, ``/info`` and the first line say which."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from dtseg import SamEngine
from dtseg.config import SamConfig, validate
from dtseg.errors import ConfigError, RandomWeightsWarning
from dtseg.runtime.fast_path import choose, describe


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1", "mps", "xpu"])
def test_auto_runs_the_fast_passes_only_where_they_were_benchmarked(device):
    # torch.device names a device type without one being present: the choice needs no GPU
    assert choose("encoder", "auto", torch.device(device)) == ("fast" if device == "cpu" else "reference")
    for asked in ("fast", "reference"):
        assert choose("decoder", asked, torch.device(device)) == asked


def test_an_unknown_choice_names_the_part():
    with pytest.raises(ValueError, match="decoder: expected one of auto, fast, reference, got 'gpu'"):
        choose("decoder", "gpu", torch.device("cpu"))


def test_describe_says_why_the_reference_runs():
    assert describe("fast", "fast", torch.device("cpu")) == "fast encoder and decoder"
    assert describe("reference", "fast", torch.device("cpu")) == "reference encoder, fast decoder"
    on_cuda = describe("reference", "reference", torch.device("cuda:0"))
    assert on_cuda.startswith("reference encoder and decoder (") and "not benchmarked on cuda" in on_cuda


def load(model: str, **options) -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load(model, "random", device="cpu", **options)


@pytest.mark.parametrize("model", ["tiny", "tiny_mobile_sam", "tiny_sam2.1"])
def test_the_engine_runs_the_passes_it_reports(model):
    """auto on the CPU: the fast passes; forced reference through a real load: the family's own modules."""
    fast, ref = load(model), load(model, encoder="reference", decoder="reference")
    assert (fast.info()["encoder"], fast.info()["decoder"]) == ("fast", "fast")
    assert (ref.info()["encoder"], ref.info()["decoder"]) == ("reference", "reference")
    assert "fast encoder and decoder" in fast.summary() and "reference encoder and decoder" in ref.summary()
    for engine, is_reference in ((fast, False), (ref, True)):
        family = engine.model
        if model == "tiny_sam2.1":
            assert (family.fast_encoder is None, family.fast_decoder is None) == (is_reference, is_reference)
        else:
            assert (family.image_encoder is family.net.image_encoder) is is_reference
            assert (family.mask_decoder is family.net.mask_decoder) is is_reference


def test_mobile_sam_reference_encoder_matches_the_fast_one():
    """The reference TinyViT (``encoder: reference``, new for MobileSAM) and dtseg's pass agree."""
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    fast = load("tiny_mobile_sam", seed=3).embed_image(image).embedding
    ref = load("tiny_mobile_sam", seed=3, encoder="reference").embed_image(image).embedding
    assert (fast - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_int8_is_a_fast_encoder():
    assert load("tiny", encoder_int8=True).info()["encoder"] == "fast"
    with pytest.raises(ValueError, match="encoder_int8"):
        load("tiny", encoder_int8=True, encoder="reference")


@pytest.mark.parametrize("value", ["auto", "fast", "reference"])
def test_config_takes_the_three_choices(value):
    assert validate(SamConfig, {"encoder": value, "decoder": value}, "t.yaml").encoder == value
    assert SamConfig().encoder == SamConfig().decoder == "auto"


def test_config_rejects_another_choice():
    with pytest.raises(ConfigError, match=r"sam\.decoder: Input should be 'auto', 'fast' or 'reference' \(got 'on'\)"):
        validate(SamConfig, {"decoder": "on"}, "t.yaml", prefix="sam")
