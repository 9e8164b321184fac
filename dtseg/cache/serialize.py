"""Cache values as bytes: a versioned ``safetensors`` document, never a pickle.

A value is a dataclass (``Embedding``, the engine's refinement logits) whose fields are read
generically (``dataclasses.fields``): a ``torch.Tensor`` field is stored as the tensor ``name``,
a ``dict[str, Tensor]`` field as the tensors ``name/key``, every other field as JSON in the
metadata (tuples come back as tuples). The metadata also holds the format name, its
version, the type's name and a BLAKE2b checksum of the tensors (name, dtype, shape, bytes),
so a torn or altered value is refused (``CacheFormatError``) and treated as a miss.

The result is a plain ``.safetensors`` file: ``safetensors.safe_open`` reads it too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from typing import Any, TypeVar

import torch
from safetensors.torch import load as _load_tensors
from safetensors.torch import save as _save_tensors

FORMAT = "dtseg.cache"
VERSION = 1
T = TypeVar("T")


class CacheFormatError(ValueError):
    """Bytes that are not a complete, intact value of the expected type and version."""


def dumps(value: Any) -> bytes:
    """A dataclass instance -> bytes (tensors copied to the CPU, contiguous)."""
    tensors: dict[str, torch.Tensor] = {}
    kinds: dict[str, str] = {}
    scalars: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if isinstance(item, torch.Tensor):
            kinds[field.name] = "tensor"
            tensors[field.name] = item
        elif isinstance(item, dict) and item and all(isinstance(v, torch.Tensor) for v in item.values()):
            kinds[field.name] = "tensors"
            tensors.update({f"{field.name}/{key}": tensor for key, tensor in item.items()})
        else:
            kinds[field.name] = "json"
            scalars[field.name] = item
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    metadata = {"format": FORMAT, "version": str(VERSION), "type": type(value).__name__,
                "fields": json.dumps(kinds), "values": json.dumps(scalars), "checksum": _checksum(tensors)}
    return _save_tensors(tensors, metadata)


def loads(data: bytes, cls: type[T]) -> T:
    """Bytes of ``dumps(x)`` with ``type(x) is cls`` -> an equal ``cls`` instance (tensors on the CPU).

    Raises ``CacheFormatError`` for anything else: truncated or altered bytes, another format
    or version, another type, fields that do not match ``cls``.
    """
    metadata = _metadata(data)
    if metadata.get("format") != FORMAT or metadata.get("version") != str(VERSION):
        raise CacheFormatError(f"not a {FORMAT} v{VERSION} value: {metadata.get('format')} v{metadata.get('version')}")
    if metadata.get("type") != cls.__name__:
        raise CacheFormatError(f"expected a {cls.__name__}, got a {metadata.get('type')}")
    try:
        tensors = _load_tensors(data)
        kinds, scalars = json.loads(metadata["fields"]), json.loads(metadata["values"])
    except Exception as exc:
        raise CacheFormatError(f"unreadable value: {exc}") from exc
    if _checksum(tensors) != metadata.get("checksum"):
        raise CacheFormatError("checksum mismatch: the value is torn or altered")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if sorted(names) != sorted(kinds):
        raise CacheFormatError(f"fields {sorted(kinds)} do not match {cls.__name__}'s {sorted(names)}")
    values: dict[str, Any] = {}
    for name in names:
        if kinds[name] == "tensor":
            values[name] = tensors[name]
        elif kinds[name] == "tensors":
            values[name] = {key.split("/", 1)[1]: t for key, t in tensors.items() if key.split("/", 1)[0] == name}
        else:
            values[name] = _tuples(scalars[name])
    return cls(**values)


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors header (8-byte little-endian length, then JSON)."""
    if len(data) < 8:
        raise CacheFormatError(f"{len(data)} bytes: too short for a safetensors header")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise CacheFormatError(f"the header claims {length} bytes, {len(data) - 8} follow")
    try:
        header = json.loads(data[8 : 8 + length])
        return dict(header.get("__metadata__") or {})
    except (ValueError, AttributeError, TypeError) as exc:
        raise CacheFormatError(f"unreadable header: {exc}") from exc


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _tuples(value: Any) -> Any:
    """JSON lists back to tuples (the dataclasses hold sizes as tuples)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
