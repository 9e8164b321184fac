"""Precision as a choice: bf16/fp16 against fp32 on every family's tiny model, and what
``dtype: auto`` picks from the CPU's flags (through the real detection code and engine load)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from dtseg import SamEngine
from dtseg.config import SamConfig
from dtseg.engine import precision
from dtseg.engine.families.base import cast_shared
from dtseg.errors import RandomWeightsWarning
from tests.engine.conftest import synthetic_image

MODELS = ["tiny", "tiny_mobile_sam", "tiny_sam2.1"]
PROMPTS = {"point_coords": [[[120.0, 110.0], [300.0, 200.0]], [[350.0, 230.0], [60.0, 40.0]]],
           "point_labels": [[1, 0], [1, 1]], "boxes": [[60, 50, 250, 180], [270, 170, 460, 290]]}


def load(model: str, dtype: str) -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load(model, "random", device="cpu", dtype=dtype, seed=5)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return synthetic_image(300, 500, seed=2)


@pytest.fixture(scope="module", params=MODELS)
def fp32(request, image):
    engine = load(request.param, "fp32")
    return engine, engine.embed_image(image, "img")


@pytest.fixture(scope="module")
def low(image):
    """Engines and embeddings in a low precision, by (model, dtype), made once."""
    made: dict[tuple[str, str], tuple[SamEngine, object]] = {}

    def get(model: str, dtype: str):
        if (model, dtype) not in made:
            engine = load(model, dtype)
            made[model, dtype] = engine, engine.embed_image(image, "img")
        return made[model, dtype]

    return get


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("dtype,torch_dtype", [
    ("bf16", torch.bfloat16),
    # fp16 on a CPU without avx512_fp16 has no native kernels: slow for the TinyViT/Hiera convolutions
    pytest.param("fp16", torch.float16, marks=pytest.mark.slow),
])
def test_low_precision_matches_fp32(fp32, low, dtype, torch_dtype):
    reference, ref_embedding = fp32
    engine, embedding = low(reference.model_name, dtype)
    assert engine.dtype_name == str(torch_dtype).removeprefix("torch.")
    # SAM's ViT runs under autocast; TinyViT and Hiera on their own copy of the weights in low precision
    own_copy = engine.family != "sam"
    assert engine.info()["autocast"] is not own_copy
    assert ("encoder weights" in engine.summary()) is own_copy
    assert all(p.dtype == torch.float32 for p in engine.model.net.parameters())  # the network stays fp32 on the CPU
    decoder = engine.model.fast_decoder if engine.family == "sam2.1" else engine.model.mask_decoder
    expected = torch.bfloat16 if dtype == "bf16" else torch.float32  # fp16 has no CPU matrix units: fp32
    assert engine.model.decoder_dtype == expected
    assert all(p.dtype == expected for p in decoder.parameters())  # a cast copy; the net keeps fp32
    assert embedding.dtype == engine.dtype_name
    assert set(embedding.features) == set(ref_embedding.features)
    for name, tensor in embedding.features.items():
        assert tensor.dtype == torch_dtype  # kept in the chosen precision: half the bytes
        assert cosine(tensor, ref_embedding.features[name]) >= 0.999, name
    ours = engine.segment_image(image_id="img", multimask_output=True, **PROMPTS)
    ref = reference.segment_image(image_id="img", multimask_output=True, **PROMPTS)
    scale = np.abs(ref.low_res_logits).max()
    assert np.abs(ours.low_res_logits - ref.low_res_logits).max() <= 0.05 * scale
    np.testing.assert_allclose(ours.scores, ref.scores, atol=0.02)
    agree = (ours.masks == ref.masks).mean()
    assert agree >= 0.98


def test_fp16_on_the_sam_family(fp32, low):
    """fp16 stays in the fast suite on the one family whose tiny encoder is cheap in it."""
    reference, ref_embedding = fp32
    if reference.model_name != "tiny":
        pytest.skip("the other families' fp16 runs in the slow suite")
    engine, embedding = low("tiny", "fp16")
    assert embedding.embedding.dtype == torch.float16 and embedding.dtype == "float16"
    assert cosine(embedding.embedding, ref_embedding.embedding) >= 0.999


def test_embedding_of_another_precision_is_decoded_in_the_engines(fp32, low):
    """A bf16 embedding handed to an fp32 engine of the same model decodes like its own."""
    reference, ref_embedding = fp32
    _, embedding = low(reference.model_name, "bf16")
    ours = reference.segment(embedding, _prompts())
    ref = reference.segment(ref_embedding, _prompts())
    assert ours.mask.shape == ref.mask.shape and (ours.mask == ref.mask).mean() >= 0.98


def test_cast_shared_keeps_one_dense_map_for_all_objects():
    dense = torch.randn(1, 8, 4, 4).expand(5, -1, -1, -1)
    cast = cast_shared(dense, torch.bfloat16)
    assert cast.shape == dense.shape and cast.stride(0) == 0 and cast.dtype == torch.bfloat16
    torch.testing.assert_close(cast.float(), dense, atol=0.02, rtol=0.01)
    no_mask = torch.randn(1, 8, 1, 1).expand(1, -1, 4, 4)  # what SAM's prompt encoder returns for one object
    assert cast_shared(no_mask, torch.bfloat16).stride() == (8, 1, 0, 0)
    per_object = torch.randn(5, 8, 4, 4)
    assert cast_shared(per_object, torch.bfloat16).stride(0) != 0
    torch.testing.assert_close(cast_shared(per_object, torch.bfloat16).float(), per_object, atol=0.02, rtol=0.01)
    assert cast_shared(per_object, torch.float32) is per_object


def _prompts():
    from dtseg.prompts import Prompts

    return Prompts.from_arrays(None, None, np.asarray(PROMPTS["boxes"], np.float32))


@pytest.mark.parametrize("flags,expected", [
    ("fpu sse avx avx2 fma", torch.float32),  # AVX2 only: bf16 is emulated, fp32 is faster
    ("fpu avx2 avx512f avx512bw", torch.float32),  # AVX-512 without its bf16 extension
    ("fpu avx2 avx512f avx512_bf16", torch.bfloat16),
    ("fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8", torch.bfloat16),
])
def test_auto_follows_the_cpu_flags(tmp_path, monkeypatch, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n"
                       f"processor\t: 1\nmodel name\t: Test CPU\nflags\t\t: {flags}\n")
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    engine = load("tiny", "auto")
    assert engine.model.precision is expected
    assert engine.info()["dtype"] == engine.info()["dtype_auto"] == str(expected).removeprefix("torch.")
    assert engine.info()["autocast"] is (expected is not torch.float32)
    embedding = engine.embed_image(synthetic_image(64, 80), "img")
    assert embedding.embedding.dtype is expected and embedding.dtype == engine.dtype_name
    assert str(expected).removeprefix("torch.") in engine.summary() and "Test CPU" not in engine.summary()


def test_auto_without_cpuinfo_is_fp32(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "missing")
    assert precision.cpu_info().isa == "unknown"
    assert precision.resolve_dtype("auto", torch.device("cpu")) is torch.float32


def test_dtype_choices_and_errors():
    cpu = torch.device("cpu")
    assert [precision.resolve_dtype(d, cpu) for d in ("fp32", "bf16", "fp16", "bfloat16")] == [
        torch.float32, torch.bfloat16, torch.float16, torch.bfloat16]
    with pytest.raises(ValueError, match="dtype: expected one of auto, fp32, bf16, fp16"):
        precision.resolve_dtype("int4", cpu)
    assert SamConfig().dtype == "auto"
    with pytest.raises(ValueError):
        SamConfig(dtype="fp64")
