"""FastImageEncoder: fp32 parity with segment_anything's ImageEncoderViT on seeded random weights."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from segment_anything.build_sam import _build_sam
from segment_anything.modeling import ImageEncoderViT, Sam

from dtseg.families.sam.encoder import FastImageEncoder, fast_encoder

MAX_ABS = 1e-3  # embedding, absolute
MIN_COSINE = 0.9999


def _sam(dim: int, depth: int, heads: int, global_attn: list[int], seed: int = 0) -> Sam:
    """SAM with seeded random weights. The rel-pos tables are zero-initialized by the builder, so
    they are filled with noise too: otherwise the bias path would not be tested at all."""
    torch.manual_seed(seed)
    sam = _build_sam(
        encoder_embed_dim=dim,
        encoder_depth=depth,
        encoder_num_heads=heads,
        encoder_global_attn_indexes=global_attn,
        checkpoint=None,
    ).eval()
    with torch.no_grad():
        for block in sam.image_encoder.blocks:
            block.attn.rel_pos_h.normal_(0.0, 0.5)
            block.attn.rel_pos_w.normal_(0.0, 0.5)
    return sam


def _compare(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """``(max abs diff, cosine similarity)`` of two embeddings, in float64."""
    a, b = a.double().flatten(), b.double().flatten()
    return (a - b).abs().max().item(), torch.nn.functional.cosine_similarity(a, b, dim=0).item()


def _structured_image(sam: Sam) -> torch.Tensor:
    """A normalized ``(1, 3, 1024, 1024)`` input: gradients, a disc and a box on a 1024x683 image
    (the bottom is SAM's zero padding, as for a landscape photo)."""
    h, w = 683, 1024
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    rgb = torch.stack([xx / w * 255, yy / h * 255, 128 + 60 * torch.sin(xx / 37) * torch.cos(yy / 23)])
    disc = (xx - 600) ** 2 + (yy - 300) ** 2 < 150**2
    rgb[:, disc] = torch.tensor([230.0, 40.0, 40.0])[:, None]
    rgb[:, 400:600, 100:350] = torch.tensor([20.0, 20.0, 200.0])[:, None, None]
    return sam.preprocess(rgb[None])


def _small_encoder(img_size: int = 128) -> ImageEncoderViT:
    """A 128 px vit with random weights and rel-pos tables, window 14 (global in block 1)."""
    torch.manual_seed(6)
    encoder = ImageEncoderViT(
        img_size=img_size, embed_dim=48, depth=2, num_heads=3, out_chans=32, qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=14,
        global_attn_indexes=(1,),
    ).eval()
    with torch.no_grad():
        for block in encoder.blocks:
            block.attn.rel_pos_h.normal_(0.0, 0.5)
            block.attn.rel_pos_w.normal_(0.0, 0.5)
    return encoder


@pytest.fixture(scope="module")
def tiny() -> Sam:
    return _sam(64, 2, 2, [1])


@pytest.fixture(scope="module")
def random_input() -> torch.Tensor:
    return torch.randn(2, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tiny_reference(tiny: Sam, random_input: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return tiny.image_encoder(random_input)


@pytest.fixture(scope="module")
def tiny_ours(tiny: Sam, random_input: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return fast_encoder(tiny.image_encoder)(random_input)


def test_tiny_matches_reference_random(tiny_ours: torch.Tensor, tiny_reference: torch.Tensor) -> None:
    assert tiny_ours.shape == (2, 256, 64, 64)
    max_abs, cosine = _compare(tiny_ours, tiny_reference)
    assert max_abs <= MAX_ABS and cosine >= MIN_COSINE, (max_abs, cosine)


def test_tiny_matches_reference_structured(tiny: Sam) -> None:
    x = _structured_image(tiny)
    with torch.inference_mode():
        max_abs, cosine = _compare(fast_encoder(tiny.image_encoder)(x), tiny.image_encoder(x))
    assert max_abs <= MAX_ABS and cosine >= MIN_COSINE, (max_abs, cosine)


def test_batch_of_two_equals_two_single_calls(
    tiny: Sam, random_input: torch.Tensor, tiny_ours: torch.Tensor
) -> None:
    """Also checks a mask chunk of one query row (the default takes several) changes nothing."""
    fast = FastImageEncoder(tiny.image_encoder, mask_chunk_bytes=1)
    with torch.inference_mode():
        singles = torch.cat([fast(random_input[:1]), fast(random_input[1:])])
    assert _compare(tiny_ours, singles)[0] <= 1e-5


def test_small_image_size_with_uneven_windows() -> None:
    """A 128 px encoder: 8x8 tokens in one zero-padded 14x14 window, 3 heads."""
    encoder = _small_encoder()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        max_abs, cosine = _compare(fast_encoder(encoder)(x), encoder(x))
    assert max_abs <= MAX_ABS and cosine >= MIN_COSINE, (max_abs, cosine)


def test_bf16_runs_through_sdpa() -> None:
    """The path a GPU caller takes (module and input cast to bf16), checked on the CPU."""
    encoder = _small_encoder()
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        reference = encoder(x)
        out = fast_encoder(encoder.to(torch.bfloat16))(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert _compare(out, reference)[1] >= 0.99


def test_bf16_autocast_encoder_close_to_fp32() -> None:
    """The CPU bf16 path (fp32 weights under autocast: every block's attention, the global
    block's 32 x 32 = 1024 tokens and each windowed block's windows, through
    ``fused.rel_pos_attention``) against the fp32 encoder."""
    from dtseg.families.sam import encoder as module

    encoder = _small_encoder(512)
    x = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(4))
    fast = fast_encoder(encoder)
    calls = []
    spy = lambda *args: calls.append(args[0].shape) or real(*args)  # noqa: E731
    real, module.rel_pos_attention = module.rel_pos_attention, spy
    try:
        with torch.inference_mode():
            reference = fast(x)
            with torch.autocast("cpu", torch.bfloat16):
                out = fast(x)
    finally:
        module.rel_pos_attention = real
    assert any(b.window_size > 0 for b in encoder.blocks) and any(b.window_size == 0 for b in encoder.blocks)
    assert len(calls) == len(encoder.blocks)  # every block's attention, in block order
    for shape, block in zip(calls, encoder.blocks, strict=True):
        ws = block.window_size
        windows = math.ceil(32 / ws) ** 2 if ws else 1  # 32 x 32 tokens at 512 px
        assert shape == (windows, 3, ws ** 2 if ws else 1024, 16)
    assert _compare(out, reference)[1] >= 0.999


def test_shares_parameters_with_the_wrapped_encoder(tiny: Sam) -> None:
    fast = fast_encoder(tiny.image_encoder)
    assert isinstance(fast, FastImageEncoder) and fast.encoder is tiny.image_encoder
    ours = dict(fast.encoder.named_parameters())
    assert all(p is ours[name] for name, p in tiny.image_encoder.named_parameters())


def test_official_state_dict_loads_into_the_wrapped_module(
    tiny: Sam, random_input: torch.Tensor, tiny_reference: torch.Tensor
) -> None:
    """A checkpoint loaded into the reference encoder after wrapping changes our output the same way."""
    encoder: ImageEncoderViT = _sam(64, 2, 2, [1], seed=5).image_encoder
    fast = fast_encoder(encoder)
    encoder.load_state_dict(tiny.image_encoder.state_dict())
    with torch.inference_mode():
        max_abs, _ = _compare(fast(random_input[:1]), tiny_reference[:1])
    assert max_abs <= MAX_ABS


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")  # torch.ao deprecation notice
def test_int8_bounded_error_and_fp32_untouched(
    tiny: Sam, random_input: torch.Tensor, tiny_reference: torch.Tensor
) -> None:
    before = {name: p.detach().clone() for name, p in tiny.image_encoder.state_dict().items()}
    int8 = fast_encoder(tiny.image_encoder, int8=True)
    with torch.inference_mode():
        out = int8(random_input[:1])
    max_abs, cosine = _compare(out, tiny_reference[:1])
    assert cosine >= 0.99, (max_abs, cosine)
    assert 0 < max_abs < 1.0, max_abs  # really quantized, but not garbage
    after = tiny.image_encoder.state_dict()
    assert all(type(m) is not torch.ao.nn.quantized.dynamic.Linear for m in tiny.image_encoder.modules())
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_compiled_engine_embeds_like_the_eager_one(tmp_path, monkeypatch) -> None:
    """``sam.encoder_compile: true`` goes through torch.compile (inductor) and changes nothing but speed."""
    from dtseg.config import SamConfig

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # a cold cache: really compiles
    image = torch.Generator().manual_seed(3)
    pixels = torch.randint(0, 256, (90, 130, 3), generator=image, dtype=torch.uint8).numpy()
    eager = SamConfig(model="tiny", checkpoint="random", device="cpu", dtype="fp32").build_engine()
    compiled = SamConfig(model="tiny", checkpoint="random", device="cpu", dtype="fp32",
                         encoder_compile=True).build_engine()
    assert hasattr(compiled.model.image_encoder, "_orig_mod")  # an OptimizedModule around FastImageEncoder
    max_abs, cosine = _compare(compiled.embed_image(pixels).embedding, eager.embed_image(pixels).embedding)
    assert max_abs <= MAX_ABS and cosine >= 0.9999, (max_abs, cosine)
    assert any(tmp_path.iterdir())  # inductor wrote its cache where it was told


@pytest.mark.slow
def test_vit_b_matches_reference() -> None:
    """The real vit_b architecture (768 wide, 12 blocks, 12 heads, global attention in 2, 5, 8, 11)."""
    sam = _sam(768, 12, 12, [2, 5, 8, 11])
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        max_abs, cosine = _compare(fast_encoder(sam.image_encoder)(x), sam.image_encoder(x))
    assert max_abs <= MAX_ABS and cosine >= MIN_COSINE, (max_abs, cosine)
