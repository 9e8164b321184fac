"""Model weights: the path -> cache -> download resolution, and loading.

The registry of models and their architectures lives with the families
(``dtseg.families``). Nothing here runs at import time. Checkpoints load with
``map_location`` and ``weights_only=True``; downloads are verified against the official sha256
(or, where no public source gives one, the official size).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from dtseg.errors import CheckpointError, CheckpointNotFoundError, ChecksumMismatchError, RandomWeightsWarning
from dtseg.families import LoadedModel, OfficialModel, model_names, resolve_model
from dtseg.families.sam.family import TINY_SPEC, SamSpec

RANDOM = "random"

ModelArg = str | SamSpec | dict | Any
CheckpointArg = str | os.PathLike | None

__all__ = ["RANDOM", "TINY_SPEC", "SamSpec", "build_model", "build_sam", "load_weights", "resolve_checkpoint",
           "save_checkpoint"]


def dtseg_home() -> Path:
    """Cache root: ``$DTSEG_HOME``, default ``~/.cache/dtseg``."""
    return Path(os.environ.get("DTSEG_HOME", "~/.cache/dtseg")).expanduser()


def checkpoint_dir() -> Path:
    return dtseg_home() / "checkpoints"


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
    _, _, official, _ = resolve_model(model)
    if official is None:
        raise CheckpointNotFoundError(f"model {model!r} has no official checkpoint: ", {
            "python": "pass checkpoint=PATH, or checkpoint='random'",
            "cli": "pass --sam-checkpoint PATH, or --allow-random (random weights)",
            "config": "set sam.checkpoint to a path, or to random"})
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
        with urllib.request.urlopen(_request(official), timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=official.filename) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        raise _offline_error(official, path, str(getattr(exc, "reason", exc))) from exc
    problem = _mismatch(official, digest.hexdigest(), partial.stat().st_size)
    if problem:
        partial.unlink(missing_ok=True)
        raise ChecksumMismatchError(f"downloaded {official.url} {problem}; the file was discarded — try again")
    partial.replace(path)
    _marker(path).write_text(_identity(official))
    return path


def _request(official: OfficialModel) -> urllib.request.Request:
    """The download request; a gated file's carries the Hugging Face token (``HF_TOKEN``, else
    the one ``huggingface-cli login`` stored) where there is one."""
    token = os.environ.get("HF_TOKEN") if official.gated else None
    if official.gated and not token:
        with contextlib.suppress(ImportError):
            from huggingface_hub import get_token

            token = get_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return urllib.request.Request(official.url, headers=headers)


def _identity(official: OfficialModel) -> str:
    """What a verified file must match: the sha256, or (no public sha256) the size."""
    return official.sha256 or f"size:{official.size_bytes}"


def _mismatch(official: OfficialModel, sha256: str, size: int) -> str | None:
    if official.sha256 is not None and sha256 != official.sha256:
        return f"has sha256 {sha256}, expected {official.sha256}"
    if official.sha256 is None and official.size_bytes is not None and size != official.size_bytes:
        return f"has {size} bytes, expected {official.size_bytes}"
    return None


def verify_cached(path: Path, official: OfficialModel) -> None:
    """Check a cached official checkpoint once (a marker file remembers the result)."""
    marker = _marker(path)
    stamp = f"{_identity(official)} {path.stat().st_size} {path.stat().st_mtime_ns}"
    if marker.is_file() and marker.read_text() in (stamp, _identity(official)):
        return
    problem = _mismatch(official, sha256_file(path), path.stat().st_size)
    if problem:
        raise ChecksumMismatchError(
            f"{path} {problem} (the official {official.name} checkpoint): delete it and download {official.url} again"
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
    check = (f", sha256 {official.sha256}" if official.sha256
             else f", {official.size_bytes} bytes" if official.size_bytes else "")
    random = "builds random weights: the masks are meaningless, and every output says so (demos and tests only)."
    gated = ""
    if official.gated:
        page = official.licence_url or official.url
        gated = (f"\n  It is in a gated Hugging Face repository: accept the {official.licence} on {page},\n"
                 f"  then log in (`huggingface-cli login`) or set HF_TOKEN to an access token and run again;\n"
                 f"  or download it by hand in a browser where you are logged in.")
    return CheckpointNotFoundError(
        f"the {official.name} checkpoint is not on this machine and could not be downloaded "
        f"({reason}).{gated}\n  Download {official.url} ({official.size_mb} MB{check})\n  and put it at {path}\n", {
            "python": f"  (or pass checkpoint=PATH, or set DTSEG_HOME). Without the file, checkpoint='random' {random}",
            "cli": f"  (or pass --sam-checkpoint PATH, or set DTSEG_HOME). Without the file, --allow-random {random}",
            "config": f"  (or set sam.checkpoint to its path, or set DTSEG_HOME). Without the file, "
                      f"sam.checkpoint: random {random}"})


def build_model(model: ModelArg, weights: Path | str, seed: int = 0) -> LoadedModel:
    """The loaded model for ``model`` (a name or an architecture) with ``weights`` (a path) or,
    for ``"random"``, weights seeded with ``seed``."""
    family, arch, _, name = resolve_model(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = family.build_net(arch)
    if weights == RANDOM:
        message = f"checkpoint='random': {name} has random weights, masks are meaningless (benchmarks and tests only)"
        warnings.warn(message, RandomWeightsWarning, stacklevel=3)
    else:
        family.load_checkpoint(net, Path(weights), name)
    return family(net.eval(), name)


def build_sam(spec: SamSpec, weights: Path | str, seed: int = 0) -> nn.Module:
    """SAM's network (segment-anything ``Sam``) for ``spec`` with ``weights`` or random ones."""
    return build_model(spec, weights, seed).net


def load_weights(net: nn.Module, path: Path, model: str = "the chosen model") -> None:
    """Load a state dict saved with ``torch.save`` (plain, or under ``model``/``state_dict``, as
    Meta's SAM 2 checkpoints are). A checkpoint of another model says which one it looks like."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict of tensors")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        guess = identify_checkpoint(state)
        hint = f" It looks like a {guess} checkpoint: pass model={guess}." if guess and guess != model else ""
        raise CheckpointError(
            f"checkpoint {path} does not match the chosen architecture ({model}): {len(missing)} missing keys "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(wrong)} with other shapes "
            f"{wrong[:3]}.{hint}"
        )
    net.load_state_dict(state)


def identify_checkpoint(state: dict[str, torch.Tensor]) -> str | None:
    """The known model (official or test-size) whose architecture ``state`` fits, by its family's
    telltale keys and shapes; ``None`` if none does."""
    for name in model_names():
        family, arch, _, _ = resolve_model(name)
        if family.state_fits(state, arch):
            return name
    return None


def save_checkpoint(model: nn.Module | LoadedModel, path: str | os.PathLike) -> Path:
    """Write a network's weights (a ``LoadedModel``'s, or any module's) as a plain state dict,
    which ``load_weights`` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = model.net if isinstance(model, LoadedModel) else model
    torch.save(net.state_dict(), path)
    return path
