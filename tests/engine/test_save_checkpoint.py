"""``save_checkpoint`` takes a ``str`` path as well as a ``Path``, and what it writes loads back."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from dtseg.engine.checkpoints import TINY_SPEC, RandomWeightsWarning, build_sam, save_checkpoint


def test_a_str_path_is_accepted_and_round_trips(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        sam = build_sam(TINY_SPEC, "random", seed=3)
    written = save_checkpoint(sam, str(tmp_path / "new" / "tiny.pth"))
    assert written == tmp_path / "new" / "tiny.pth" and isinstance(written, Path)
    state = torch.load(written, map_location="cpu", weights_only=True)
    assert state.keys() == sam.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in sam.state_dict().items())
