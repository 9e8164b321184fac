"""``np.save`` request data (binary embeddings / mask_input): headers are checked before any data
is read or inflated, so a small request can never make the server allocate a large array."""

from __future__ import annotations

import base64
import io
import struct
import tracemalloc

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dtseg.errors import InputError
from dtseg.server.common.encode import load_npy, mask_input_logits

POINT = {"point_coords": [[20, 18]], "point_labels": [1]}
EMBEDDING = (256, 64, 64)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, array)
    return buffer.getvalue()


def npy_header_only(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A version 1.0 .npy header declaring ``shape``, followed by 16 bytes of data only."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(16)


def embedding_shape(shape: tuple[int, ...]) -> bool:
    return shape in (EMBEDDING, (1, *EMBEDDING))


def test_a_huge_declared_shape_is_refused_from_the_header() -> None:
    data = b64(npy_header_only((100_000, 100_000, 1000)))
    with pytest.raises(InputError, match=r"declares \(100000, 100000, 1000\)") as info:
        load_npy(data, "embeddings", embedding_shape, "an embedding")
    assert info.value.field == "embeddings"


def test_an_npz_bomb_is_refused_before_inflating() -> None:
    """8.4 MB of float64 zeros compress to 33 KB: the header says so before a byte is inflated."""
    bomb = b64(npz(np.zeros((4, *EMBEDDING))))
    assert len(bomb) < 50_000
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"declares \(4, 256, 64, 64\)"):
            load_npy(bomb, "embeddings", embedding_shape, "an embedding")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak} bytes allocated to refuse a {len(bomb)}-byte request"


def test_accepted_arrays_read_only_what_they_need() -> None:
    array = np.arange(np.prod(EMBEDDING), dtype=np.float16).reshape(EMBEDDING)
    for data in (npy(array), npz(array), npy(np.asfortranarray(array))):
        np.testing.assert_array_equal(load_npy(b64(data), "embeddings", embedding_shape, "e"), array)
    truncated = npy(array)[:-10]
    with pytest.raises(InputError, match="truncated"):
        load_npy(b64(truncated), "embeddings", embedding_shape, "e")


@pytest.mark.parametrize("data, fragment", [
    (npy(np.zeros(EMBEDDING, dtype=[("a", "<f4")])), "dtype"),
    (npy(np.zeros(EMBEDDING, dtype=np.complex64)), "dtype"),
    (npy_header_only(EMBEDDING, "|O"), "dtype"),
    (b"PK\x03\x04 not really a zip", "np.save"),
    (b"\x93NUMPY\x09\x00 bad version", "np.save"),
])
def test_unusual_data_is_a_clean_error(data: bytes, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        load_npy(b64(data), "embeddings", embedding_shape, "e")


def test_two_arrays_in_an_npz_are_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, a=np.zeros(EMBEDDING, np.float32), b=np.zeros(1))
    with pytest.raises(InputError, match="one array"):
        load_npy(b64(buffer.getvalue()), "embeddings", embedding_shape, "e")


def test_mask_input_counts_are_bounded_before_allocation() -> None:
    with pytest.raises(InputError, match="max_objects") as info:
        mask_input_logits(b64(npy_header_only((1_000_000, 1, 256, 256))), "binary", max_objects=10)
    assert info.value.field == "mask_input"
    # json polygons: each would become a 256x256 float32 canvas; 11 of them are refused up front
    with pytest.raises(InputError, match="max_objects"):
        mask_input_logits([[[0, 0], [5, 0], [5, 5]]] * 11, "json", max_objects=10)
    assert mask_input_logits([[[0, 0], [5, 0], [5, 5]]] * 10, "json", max_objects=10).shape == (10, 1, 256, 256)


def test_bombs_through_the_routes_are_400(client: TestClient) -> None:
    embeddings = client.post("/sam/segment_image", json={
        "embeddings": b64(npy_header_only((100_000, 100_000, 1000))), "embeddings_format": "binary",
        "orig_im_size": [48, 64], **POINT})
    assert embeddings.status_code == 400 and embeddings.json()["field"] == "embeddings"
    zipped = client.post("/sam/segment_image", json={
        "embeddings": b64(npz(np.zeros((4, *EMBEDDING)))), "embeddings_format": "binary",
        "orig_im_size": [48, 64], **POINT})
    assert zipped.status_code == 400 and "(4, 256, 64, 64)" in zipped.json()["message"]
    masks = client.post("/sam/segment_image", json={
        "embeddings": b64(npy(np.zeros(EMBEDDING, np.float32))), "embeddings_format": "binary",
        "orig_im_size": [48, 64], "has_mask_input": True, "use_mask_input_cache": False,
        "mask_input": b64(npy_header_only((100_000, 1, 256, 256))), "mask_input_format": "binary", **POINT})
    assert masks.status_code == 400 and masks.json()["field"] == "mask_input"
    assert "max_objects" in masks.json()["message"]
