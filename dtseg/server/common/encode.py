"""Segmentation results -> response bodies (json polygons, COCO RLE, npz) and request mask inputs -> logits.

Masks are flattened over objects and candidates: mask ``k`` is object ``k // M``, candidate
``k % M`` (M = 1 unless ``multimask_output``). With one object and one mask that is exactly
Roboflow's single-element list.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import zipfile
from collections.abc import Callable
from typing import IO, Any

import cv2
import numpy as np

from dtseg.engine import SegmentResult
from dtseg.engine.engine import mask_input_batch
from dtseg.errors import InputError
from dtseg.masks import mask_to_polygons, masks_to_rle

LOW_RES = 256
#: Logit given to the inside/outside of a rasterized polygon mask input (SAM logits are ~ +-10..20).
POLYGON_LOGIT = 10.0


def largest_ring(parts: list[list[np.ndarray]]) -> list[list[int]]:
    """Roboflow's polygon for a mask: the exterior ring of its largest part (``[]`` if empty)."""
    if not parts:
        return []
    areas = [(cv2.contourArea(p[0].reshape(-1, 1, 2)), len(p[0])) for p in parts]
    best = max(range(len(parts)), key=lambda i: areas[i])
    return parts[best][0].tolist()


def json_payload(result: SegmentResult) -> dict[str, Any]:
    """``masks`` / ``low_res_masks`` as Roboflow polygons, plus ``polygons`` (every part and hole) and ``scores``."""
    masks = result.masks.reshape(-1, *result.masks.shape[2:])
    low_res = result.low_res_logits.reshape(-1, *result.low_res_logits.shape[2:]) > 0
    full = [mask_to_polygons(m) for m in masks]
    return {
        "masks": [largest_ring(parts) for parts in full],
        "low_res_masks": [largest_ring(mask_to_polygons(m)) for m in low_res],
        "polygons": [[[ring.tolist() for ring in part] for part in parts] for parts in full],
    }


def rle_payload(result: SegmentResult) -> dict[str, Any]:
    """``masks`` / ``low_res_masks`` as COCO compressed RLE (``{"size": [H, W], "counts": str}``)."""
    masks = result.masks.reshape(-1, *result.masks.shape[2:])
    low_res = result.low_res_logits.reshape(-1, *result.low_res_logits.shape[2:]) > 0
    return {"masks": masks_to_rle(masks), "low_res_masks": masks_to_rle(low_res)}


def npz_bytes(result: SegmentResult) -> bytes:
    """``np.savez_compressed``: ``masks`` ``(N*M, H, W)`` bool, ``low_res_masks`` ``(N*M, 256, 256)``
    float32 logits, ``scores`` ``(N, M)`` float32."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        masks=result.masks.reshape(-1, *result.masks.shape[2:]),
        low_res_masks=result.low_res_logits.reshape(-1, *result.low_res_logits.shape[2:]).astype(np.float32),
        scores=result.scores.astype(np.float32),
    )
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


ShapeCheck = Callable[[tuple[int, ...]], bool]
#: dtypes accepted in ``np.save`` request data: bool, integers and floats up to 8 bytes.
_NUMERIC_KINDS = "biuf"


def load_npy(value: Any, field: str, accept: ShapeCheck, expected: str) -> np.ndarray:
    """A base64 string of ``np.save`` (or ``np.savez`` with one array) bytes -> array; never unpickles.

    The ``.npy`` header's dtype and shape are checked (``accept(shape)``; ``expected`` says what
    is accepted) before any data is read or decompressed, so the memory used is the size of an
    accepted array, whatever the header declares or the zip entry inflates to.
    """
    if not isinstance(value, str):
        raise InputError(field, "binary format expects a base64 string of np.save bytes")
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(field, f"not base64: {exc}") from None
    try:
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = archive.namelist()
                if len(names) != 1:
                    raise InputError(field, f"expected one array in the npz, got {len(names)} entries")
                with archive.open(names[0]) as stream:
                    return _read_npy(stream, field, accept, expected)
        return _read_npy(io.BytesIO(data), field, accept, expected)
    except InputError:
        raise
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, OSError, EOFError) as exc:
        raise InputError(field, f"not np.save / np.savez bytes: {exc}") from None


def _read_npy(stream: IO[bytes], field: str, accept: ShapeCheck, expected: str) -> np.ndarray:
    """Header first (dtype, shape, order), then exactly the bytes an accepted array needs."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise InputError(field, f".npy format version {version} is not accepted (np.save writes 1.0)")
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in _NUMERIC_KINDS or dtype.itemsize > 8:
        raise InputError(field, f"dtype {dtype} is not accepted: expected bool, integers or floats")
    if not accept(tuple(shape)):
        raise InputError(field, f"expected {expected}, the header declares {tuple(shape)}")
    nbytes = math.prod(shape) * dtype.itemsize
    data = stream.read(nbytes)
    if len(data) != nbytes:
        raise InputError(field, f"truncated data: {len(data)} of {nbytes} bytes")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def numeric_array(value: Any, field: str, dtype: Any = np.float32) -> np.ndarray:
    """Nested lists -> a finite numeric array, or ``InputError`` naming ``field``."""
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(field, f"expected a rectangular array of numbers: {exc}") from None
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError(field, "expected finite numbers")
    return array


def mask_input_logits(value: Any, fmt: str, max_objects: int, field: str = "mask_input") -> np.ndarray:
    """A request's ``mask_input`` -> logits ``(N, 1, 256, 256)`` float32, ``1 <= N <= max_objects``.

    ``binary``: base64 ``np.save`` bytes of logits. ``json``: logits ``(256, 256)``,
    ``(N, 256, 256)`` or ``(N, 1, 256, 256)``; or (Roboflow) polygons on the 256x256 grid,
    one per object (``[[x, y], ...]``), rasterized to +10 inside / -10 outside.
    """
    if value is None:
        raise InputError(field, "has_mask_input is true but there is no mask_input (and no cached mask for image_id)")
    if fmt == "binary":
        array = load_npy(value, field, lambda shape: _mask_shape_ok(shape, max_objects),
                         "logits (256, 256), (N, 256, 256) or (N, 1, 256, 256) "
                         f"with 1 <= N <= server.max_objects = {max_objects}")
        array = array.astype(np.float32)
    else:
        array = _json_mask(value, field, max_objects)
    masks = mask_input_batch(array, LOW_RES, field)
    if len(masks) > max_objects:
        raise InputError(field, f"{len(masks)} masks: more than server.max_objects = {max_objects}")
    return masks


def _mask_shape_ok(shape: tuple[int, ...], max_objects: int) -> bool:
    grid = (LOW_RES, LOW_RES)
    return shape == grid or (len(shape) in (3, 4) and shape[-2:] == grid and 1 <= shape[0] <= max_objects
                             and (len(shape) == 3 or shape[1] == 1))


def _json_mask(value: Any, field: str, max_objects: int) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise InputError(field, "expected logits or polygons as nested lists")
    if nesting_depth(value) in (3, 4) and len(value) > max_objects:  # (N, ...) logits or N polygons
        raise InputError(field, f"{len(value)} masks: more than server.max_objects = {max_objects}")
    try:
        array = np.asarray(value, dtype=np.float32)
        ragged = False
    except (TypeError, ValueError):
        ragged, array = True, None
    if not ragged and array is not None and array.shape[-2:] == (LOW_RES, LOW_RES):
        return array
    polygons = value if nesting_depth(value) == 3 else [value] if nesting_depth(value) == 2 else None
    if polygons is None:
        raise InputError(field, "expected logits (..., 256, 256) or polygons [[x, y], ...] on the 256x256 grid")
    out = np.full((len(polygons), LOW_RES, LOW_RES), -POLYGON_LOGIT, np.float32)
    for i, polygon in enumerate(polygons):
        points = numeric_array(polygon, f"{field}[{i}]")
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 1:
            raise InputError(f"{field}[{i}]", f"expected a polygon [[x, y], ...], got shape {points.shape}")
        canvas = np.zeros((LOW_RES, LOW_RES), np.uint8)
        cv2.fillPoly(canvas, [np.round(np.clip(points, -1, LOW_RES)).astype(np.int32)], 1)
        out[i][canvas > 0] = POLYGON_LOGIT
    return out


def nesting_depth(value: Any) -> int:
    """How deep the first elements of nested lists go: ``[[1, 2]]`` -> 2, ``[]`` -> 0."""
    depth = 0
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    return depth
