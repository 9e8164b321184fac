"""SAM architectures, official checkpoints, and the path -> cache -> download resolution.

Nothing here runs at import time. Checkpoints load with ``map_location`` and
``weights_only=True``; downloads are verified against the official sha256.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import torch
from segment_anything.build_sam import _build_sam
from segment_anything.modeling import Sam
from tqdm import tqdm

from dtseg.errors import CheckpointError, CheckpointNotFoundError, ChecksumMismatchError, RandomWeightsWarning


RANDOM = "random"


@dataclass(frozen=True)
class SamSpec:
    """A SAM image-encoder architecture (the prompt encoder and decoder are fixed)."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.encoder_embed_dim % self.encoder_num_heads:
            raise ValueError("encoder_embed_dim must be divisible by encoder_num_heads")
        if any(not 0 <= i < self.encoder_depth for i in self.encoder_global_attn_indexes):
            raise ValueError("encoder_global_attn_indexes must lie in [0, encoder_depth)")


@dataclass(frozen=True)
class OfficialModel:
    """An official Segment Anything checkpoint."""

    name: str
    spec: SamSpec
    filename: str
    url: str
    sha256: str
    size_mb: int = field(compare=False)


_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
MODELS: dict[str, OfficialModel] = {
    m.name: m
    for m in (
        OfficialModel("vit_h", SamSpec(1280, 32, 16, (7, 15, 23, 31)), "sam_vit_h_4b8939.pth",
                      _BASE_URL + "sam_vit_h_4b8939.pth",
                      "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2445),
        OfficialModel("vit_l", SamSpec(1024, 24, 16, (5, 11, 17, 23)), "sam_vit_l_0b3195.pth",
                      _BASE_URL + "sam_vit_l_0b3195.pth",
                      "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", 1250),
        OfficialModel("vit_b", SamSpec(768, 12, 12, (2, 5, 8, 11)), "sam_vit_b_01ec64.pth",
                      _BASE_URL + "sam_vit_b_01ec64.pth",
                      "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 358),
    )
}

#: A very small architecture for tests and demos on random weights (same decoder as SAM).
TINY_SPEC = SamSpec(64, 2, 2, (1,))

ModelArg = Union[str, SamSpec, dict]
CheckpointArg = Union[str, os.PathLike, None]


def dtseg_home() -> Path:
    """Cache root: ``$DTSEG_HOME``, default ``~/.cache/dtseg``."""
    return Path(os.environ.get("DTSEG_HOME", "~/.cache/dtseg")).expanduser()


def checkpoint_dir() -> Path:
    return dtseg_home() / "checkpoints"


def resolve_spec(model: ModelArg) -> tuple[SamSpec, OfficialModel | None]:
    """A model name (``vit_h``/``vit_l``/``vit_b``/``tiny``), spec or spec dict -> spec."""
    if isinstance(model, SamSpec):
        return model, None
    if isinstance(model, dict):
        data = dict(model)
        data["encoder_global_attn_indexes"] = tuple(data.get("encoder_global_attn_indexes", ()))
        return SamSpec(**data), None
    if model == "tiny":
        return TINY_SPEC, None
    if model in MODELS:
        return MODELS[model].spec, MODELS[model]
    raise ValueError(f"model: unknown SAM model {model!r}; expected one of {sorted(MODELS) + ['tiny']} or a spec")


def resolve_checkpoint(model: ModelArg, checkpoint: CheckpointArg = None, *, download: bool = True) -> Path | str:
    """Where the weights come from: an explicit path, ``"random"``, the cache, or a download.

    Offline (or with ``DTSEG_OFFLINE=1``) a missing official checkpoint raises
    ``CheckpointNotFoundError`` naming the URL and the exact path to put the file.
    """
    if checkpoint is not None and str(checkpoint) == RANDOM:
        return RANDOM
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointNotFoundError(f"checkpoint file not found: {path}")
        return path
    _, official = resolve_spec(model)
    if official is None:
        raise CheckpointNotFoundError(
            f"model {model!r} is not an official SAM model: pass checkpoint=PATH, or checkpoint='random'"
        )
    path = checkpoint_dir() / official.filename
    if path.is_file():
        verify_cached(path, official)
        return path
    if not download or os.environ.get("DTSEG_OFFLINE") == "1":
        raise _offline_error(official, path, "downloads are disabled (DTSEG_OFFLINE=1)")
    return download_checkpoint(official, path)


def download_checkpoint(official: OfficialModel, path: Path, timeout: float = 30.0) -> Path:
    """Download ``official`` to ``path`` with a progress bar; verify sha256; rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(official.url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=official.filename) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        raise _offline_error(official, path, str(getattr(exc, "reason", exc))) from exc
    if digest.hexdigest() != official.sha256:
        partial.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"downloaded {official.url} has sha256 {digest.hexdigest()}, expected {official.sha256}; "
            "the file was discarded — try again"
        )
    partial.replace(path)
    _marker(path).write_text(official.sha256)
    return path


def verify_cached(path: Path, official: OfficialModel) -> None:
    """Check a cached official checkpoint once (a marker file remembers the result)."""
    marker = _marker(path)
    stamp = f"{official.sha256} {path.stat().st_size} {path.stat().st_mtime_ns}"
    if marker.is_file() and marker.read_text() in (stamp, official.sha256):
        return
    actual = sha256_file(path)
    if actual != official.sha256:
        raise ChecksumMismatchError(
            f"{path} has sha256 {actual}, but the official {official.name} checkpoint has "
            f"{official.sha256}: delete it and download {official.url} again"
        )
    marker.write_text(stamp)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _offline_error(official: OfficialModel, path: Path, reason: str) -> CheckpointNotFoundError:
    return CheckpointNotFoundError(
        f"the SAM {official.name} checkpoint is not on this machine and could not be downloaded "
        f"({reason}).\n  Download {official.url} ({official.size_mb} MB, sha256 {official.sha256})\n"
        f"  and put it at {path}\n  (or pass checkpoint=PATH / --sam-checkpoint PATH, or set DTSEG_HOME). "
        "For tests and benchmarks only, checkpoint='random' builds random weights."
    )


def build_sam(spec: SamSpec, weights: Path | str, seed: int = 0) -> Sam:
    """Build SAM with segment-anything's builder; load ``weights`` (a path) or seed randomly."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = _build_sam(
            encoder_embed_dim=spec.encoder_embed_dim,
            encoder_depth=spec.encoder_depth,
            encoder_num_heads=spec.encoder_num_heads,
            encoder_global_attn_indexes=list(spec.encoder_global_attn_indexes),
            checkpoint=None,
        )
    if weights == RANDOM:
        message = "checkpoint='random': SAM has random weights, masks are meaningless (benchmarks and tests only)"
        warnings.warn(message, RandomWeightsWarning, stacklevel=3)
    else:
        load_weights(sam, Path(weights))
    return sam.eval()


def load_weights(sam: Sam, path: Path) -> None:
    """Load a state dict saved with ``torch.save`` (plain, or under ``model``/``state_dict``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    expected = sam.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"checkpoint {path} does not match the chosen architecture: {len(missing)} missing keys "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(wrong)} with other shapes "
            f"{wrong[:3]} — is `model` right (vit_h / vit_l / vit_b)?"
        )
    sam.load_state_dict(state)


def save_checkpoint(sam: Sam, path: str | Path) -> Path:
    """Write ``sam``'s weights as a plain state dict (what ``load_weights`` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sam.state_dict(), path)
    return path


def select_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is checked to exist."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device: {exc}") from exc
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but torch sees no CUDA device")
    if chosen.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device: mps was asked for but is not available")
    return chosen


_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
           "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def select_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``fp32`` anywhere; ``fp16``/``bf16`` on CUDA (or MPS for fp16)."""
    resolved = dtype if isinstance(dtype, torch.dtype) else _DTYPES.get(str(dtype))
    if resolved is None:
        raise ValueError(f"dtype: expected one of {sorted(_DTYPES)}, got {dtype!r}")
    if resolved != torch.float32 and device.type == "cpu":
        raise ValueError("dtype: half precision is for CUDA; on CPU use fp32 (or the int8 encoder option)")
    return resolved
