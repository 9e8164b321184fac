"""Cache values as safetensors bytes: round trips, torn and altered bytes refused, no pickle."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from safetensors import safe_open

from dtseg.cache.serialize import CacheFormatError, dumps, loads
from dtseg.engine.engine import Embedding, _Logits


def embedding(dtype: torch.dtype = torch.float32) -> Embedding:
    """A SAM 2-shaped embedding: the image embedding and two high-resolution levels."""
    gen = torch.Generator().manual_seed(0)
    features = {"image_embed": torch.randn(256, 64, 64, generator=gen).to(dtype),
                "high_res_0": torch.randn(32, 256, 256, generator=gen).to(dtype),
                "high_res_1": torch.randn(64, 128, 128, generator=gen).to(dtype)}
    return Embedding("photo-1", features, (480, 640), (1024, 1024), "abc123", "sam2.1_t",
                     str(dtype).removeprefix("torch."))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_embedding_round_trip_keeps_every_field_and_bit(dtype):
    original = embedding(dtype)
    data = dumps(original)
    back = loads(data, Embedding)
    assert (back.image_id, back.original_size, back.input_size, back.image_hash, back.model, back.dtype) == \
        ("photo-1", (480, 640), (1024, 1024), "abc123", "sam2.1_t", str(dtype).removeprefix("torch."))
    assert set(back.features) == set(original.features)
    for name, tensor in original.features.items():
        assert back.features[name].dtype == dtype and torch.equal(back.features[name], tensor)
    assert len(data) < original.nbytes + 1024  # compact: the tensor plus a small header


def test_logits_round_trip_and_type_is_checked():
    logits = _Logits(torch.randn(3, 1, 256, 256))
    assert torch.equal(loads(dumps(logits), _Logits).logits, logits.logits)
    with pytest.raises(CacheFormatError, match="expected a Embedding"):
        loads(dumps(logits), Embedding)


def test_a_dict_of_tensors_field_round_trips():
    """The coming ``Embedding(features: dict[str, Tensor], ...)`` shape needs no new code."""

    @dataclass(frozen=True)
    class Multi:
        image_id: str
        features: dict
        size: tuple

    value = Multi("x", {"image_embed": torch.ones(2, 3), "high_res_0": torch.arange(6.0).reshape(1, 6)}, (3, 4))
    back = loads(dumps(value), Multi)
    assert back.image_id == "x" and back.size == (3, 4) and set(back.features) == {"image_embed", "high_res_0"}
    assert torch.equal(back.features["high_res_0"], value.features["high_res_0"])


def test_the_bytes_are_a_plain_safetensors_file(tmp_path):
    path = tmp_path / "e.safetensors"
    path.write_bytes(dumps(embedding()))
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["format"] == "dtseg.cache" and f.metadata()["type"] == "Embedding"
        assert f.get_tensor("features/image_embed").shape == (256, 64, 64)
        assert f.get_tensor("features/high_res_0").shape == (32, 256, 256)


@pytest.mark.parametrize("cut", [0, 7, 100, -1, -4096])
def test_torn_bytes_are_refused(cut):
    data = dumps(embedding())
    with pytest.raises(CacheFormatError):
        loads(data[:cut], Embedding)


def test_a_flipped_bit_in_the_tensor_is_refused():
    data = bytearray(dumps(embedding()))
    data[-1000] ^= 0x01
    with pytest.raises(CacheFormatError, match="checksum"):
        loads(bytes(data), Embedding)


def test_other_bytes_and_other_versions_are_refused():
    import pickle

    with pytest.raises(CacheFormatError):
        loads(pickle.dumps(embedding()), Embedding)
    data = dumps(embedding()).replace(b'"version":"1"', b'"version":"9"')
    with pytest.raises(CacheFormatError, match="v1"):
        loads(data, Embedding)
