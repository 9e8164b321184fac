"""Precision as a choice: bf16/fp16 against fp32 on every family's tiny model, and what
``dtype: auto`` picks from the CPU's flags (through the real detection code and engine load)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dtseg import SamEngine
from dtseg.config import SamConfig
from dtseg.errors import RandomWeightsWarning
from dtseg.families.base import cast_shared
from dtseg.families.sam.family import SamModel
from dtseg.families.sam2.family import Sam2Model
from dtseg.runtime import precision
from tests.tiny import synthetic_image

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


@pytest.mark.parametrize("dtype,torch_dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_low_precision_matches_fp32(fp32, low, dtype, torch_dtype):
    """On the path this CPU takes (``precision.plan``): its oneDNN kernels in the precision, or,
    without them (bf16 on AVX2, fp16 without AVX512-FP16), fp32 compute and features rounded."""
    reference, ref_embedding = fp32
    engine, embedding = low(reference.model_name, dtype)
    model, info = engine.model, engine.info()
    assert engine.dtype_name == info["dtype"] == str(torch_dtype).removeprefix("torch.")
    fallback = not precision.onednn_kernels(torch_dtype)
    assert info["dtype_path"] == model.plan.path and (info["dtype_path"] == "fallback") is fallback
    assert model.compute == (torch.float32 if fallback else torch_dtype)
    assert info["compute_dtype"] == str(model.compute).removeprefix("torch.")
    assert (f"{engine.dtype_name} features, computed in float32 (fallback: no oneDNN" in engine.summary()) is fallback
    # SAM's ViT runs under autocast; TinyViT and Hiera on their own copy of the weights in low precision
    vit = type(model) is SamModel
    own_copy = not vit and not fallback
    assert info["autocast"] is (vit and not fallback)
    assert ("encoder weights" in engine.summary()) is own_copy
    assert all(p.dtype == torch.float32 for p in model.net.parameters())  # the network stays fp32 on the CPU
    decoder = model.fast_decoder if isinstance(model, Sam2Model) else model.mask_decoder
    # fp16 has no CPU matrix units: fp32
    expected = torch.bfloat16 if model.compute == torch.bfloat16 else torch.float32
    assert model.decoder_dtype == expected
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


def fake_cpu(tmp_path, monkeypatch, flags: str) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n"
                       f"processor\t: 1\nmodel name\t: Test CPU\nflags\t\t: {flags}\n")
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)


@pytest.mark.parametrize("flags,native", [
    ("fpu sse avx avx2 fma", False),  # AVX2 only: bf16 is emulated, fp32 is faster
    ("fpu avx2 avx512f avx512bw avx512vl avx512dq", False),  # AVX-512 without its bf16 extension
    ("fpu avx2 avx512f avx512_bf16", True),
    ("fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8", True),
])
def test_auto_and_bf16_follow_the_cpu(tmp_path, monkeypatch, flags, native):
    """The flags (faked) and this CPU's oneDNN kernels (probed: ``onednn_kernels``) decide, through
    a real engine load: ``auto`` is bf16 only with both; an explicit bf16 runs natively, emulated
    (kernels, no bf16 arithmetic) or falls back to fp32 compute (no kernels), and says which."""
    fake_cpu(tmp_path, monkeypatch, flags)
    kernels = precision.onednn_kernels(torch.bfloat16)
    expected = torch.bfloat16 if native and kernels else torch.float32
    engine = load("tiny", "auto")
    assert engine.model.precision is expected
    assert engine.info()["dtype"] == engine.info()["dtype_auto"] == str(expected).removeprefix("torch.")
    assert engine.info()["autocast"] is (expected is not torch.float32)
    embedding = engine.embed_image(synthetic_image(64, 80), "img")
    assert embedding.embedding.dtype is expected and embedding.dtype == engine.dtype_name
    assert str(expected).removeprefix("torch.") in engine.summary() and "Test CPU" not in engine.summary()

    bf16 = load("tiny", "bf16")
    path = "fallback" if not kernels else "native" if native else "emulated"
    assert bf16.info()["dtype_path"] == path and bf16.info()["dtype"] == "bfloat16"
    assert bf16.model.compute is (torch.float32 if path == "fallback" else torch.bfloat16)
    summary = bf16.summary()
    assert ("bfloat16 (native; autocast, fp32 weights)" in summary) is (path == "native")
    assert ("bfloat16 (emulated: no bfloat16 arithmetic on this CPU" in summary) is (path == "emulated")
    fallback = "bfloat16 features, computed in float32 (fallback: no oneDNN bfloat16 kernels"
    assert (fallback in summary) is (path == "fallback")
    assert bf16.embed_image(synthetic_image(64, 80), "img").embedding.dtype is torch.bfloat16


@pytest.mark.parametrize("model", ["tiny_mobile_sam", "tiny_sam2.1"])
def test_without_onednn_kernels_bf16_falls_back_to_fp32_compute(tmp_path, monkeypatch, no_onednn_kernels, model):
    """A CPU with AVX512-BF16 in its flags whose oneDNN kernels still fail (faked: they raise, as
    on AVX2): the probe decides once at load, nothing raises, ``auto`` is fp32, bf16 is computed
    in fp32 and kept in bf16, and the first line names the missing kernels and what they need."""
    fake_cpu(tmp_path, monkeypatch, "fpu avx2 avx512f avx512bw avx512vl avx512dq avx512_bf16")
    assert precision.resolve_dtype("auto", torch.device("cpu")) is torch.float32
    engine = load(model, "bf16")
    assert [(kernel, dtype) for kernel, dtype in no_onednn_kernels] == [("linear", torch.bfloat16)]
    assert engine.info()["dtype_path"] == "fallback" and engine.info()["compute_dtype"] == "float32"
    summary = engine.summary()
    assert ("bfloat16 features, computed in float32 (fallback: no oneDNN bfloat16 kernels on this CPU (AVX2 AVX-512 "
            "AVX512-BF16") in summary  # then ", oneDNN limited to ..." where ONEDNN_MAX_CPU_ISA is set
    assert "; they need AVX-512 (BW, VL, DQ), AVX-NE-CONVERT or AMX)); auto on this cpu: float32" in summary
    image = synthetic_image(300, 500, seed=2)
    embedding, reference = engine.embed_image(image, "img"), load(model, "fp32").embed_image(image, "img")
    for name, tensor in embedding.features.items():
        assert tensor.dtype == torch.bfloat16
        assert cosine(tensor, reference.features[name]) >= 0.9999, name  # fp32 compute: only the rounding
    assert len(set(no_onednn_kernels)) == len(no_onednn_kernels)  # each kernel probed once per precision, never run


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


AVX2_SCRIPT = """
import json, warnings
import torch
from dtseg import SamEngine
from tests.tiny import synthetic_image
warnings.simplefilter("ignore")
image, out = synthetic_image(300, 500, seed=2), {}
for model in ("tiny_mobile_sam", "tiny_sam2.1"):
    engines = {d: SamEngine.load(model, "random", device="cpu", dtype=d, seed=5) for d in ("fp32", "bf16")}
    features = {d: e.embed_image(image).features for d, e in engines.items()}
    masks = {d: e.segment_image(image_id=None, image=image, boxes=[[60, 50, 250, 180]]).masks
             for d, e in engines.items()}
    cos = lambda a, b: float(torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), 0))
    out[model] = {"summary": engines["bf16"].summary(), "info": engines["bf16"].info(),
                  "dtypes": sorted({str(t.dtype) for t in features["bf16"].values()}),
                  "cosine": min(cos(t, features["fp32"][k]) for k, t in features["bf16"].items()),
                  "masks_agree": float((masks["bf16"] == masks["fp32"]).mean())}
print(json.dumps(out))
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="ONEDNN_MAX_CPU_ISA=AVX2 is x86's")
def test_an_avx2_cpu_for_real():
    """oneDNN limited to AVX2 (``ONEDNN_MAX_CPU_ISA``, read when torch loads: a fresh process), so
    its bf16 kernels fail here as on an AVX2-only CPU: bf16 engines of the light encoders load,
    embed and decode without oneDNN's error, in fp32 with bf16 features, and say so."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    result = subprocess.run([sys.executable, "-c", AVX2_SCRIPT], capture_output=True, text=True, env=env,
                            cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "primitive descriptor" not in result.stderr and "bf16 path needs" not in result.stderr
    for model, seen in json.loads(result.stdout.splitlines()[-1]).items():
        assert seen["info"]["dtype"] == "bfloat16" and seen["info"]["dtype_path"] == "fallback", model
        assert seen["info"]["compute_dtype"] == "float32" and seen["info"]["dtype_auto"] == "float32"
        assert seen["dtypes"] == ["torch.bfloat16"]
        assert "(fallback: no oneDNN bfloat16 kernels on this CPU (" in seen["summary"]
        assert "oneDNN limited to AVX2; they need AVX-512 (BW, VL, DQ), AVX-NE-CONVERT or AMX)" in seen["summary"]
        assert seen["cosine"] >= 0.9999 and seen["masks_agree"] >= 0.99, model
