"""``dtseg serve`` offline: missing weights are an error whose advice is in flags, and
``--allow-random`` serves random weights, labelled as such (as ``segment`` and ``video`` do)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from dtseg.cli import build_parser, main, serve
from dtseg.server.config import load_serve_config
from tests.server.live import serving


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No network, and an empty checkpoint cache."""
    monkeypatch.setenv("DTSEG_OFFLINE", "1")
    monkeypatch.setenv("DTSEG_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.parametrize("command", [
    ["serve"], ["segment", "nothing.jpg", "--set", "prompts=[{points: {objects: [{points: [[1, 1]]}]}}]"]])
def test_missing_weights_advise_the_command_line_spelling(offline: Path, command: list[str],
                                                          capsys: pytest.CaptureFixture) -> None:
    assert main([*command, "--set", "sam.model=vit_b"]) == 2
    err = capsys.readouterr().err
    assert "sam_vit_b_01ec64.pth" in err and str(offline / "home" / "checkpoints") in err
    assert "--allow-random" in err and "--sam-checkpoint PATH" in err
    assert "checkpoint='random'" not in err and "checkpoint=PATH" not in err  # the Python spelling


def test_serve_help_offers_allow_random(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--allow-random" in capsys.readouterr().out


def test_allow_random_replaces_only_missing_weights(offline: Path, tiny_sam_checkpoint: Path) -> None:
    args = build_parser().parse_args(["serve", "--allow-random", "--set", "sam2.model=sam2.1_t",
                                      "--set", "sam3.model=sam3"])
    config = load_serve_config(None, serve._overrides(args)).random_if_missing()
    assert (config.sam.checkpoint, config.sam2.checkpoint, config.sam3.checkpoint) == ("random", "random", "random")
    assert config.server.allow_random  # /segment's detectors too
    given = load_serve_config(None, [f"sam.checkpoint={json.dumps(str(tiny_sam_checkpoint))}", "sam.model=tiny"])
    assert given.random_if_missing().sam.checkpoint == str(tiny_sam_checkpoint)


def test_serve_with_allow_random_says_so_everywhere(offline: Path) -> None:
    config = offline / "serve.yaml"
    config.write_text("sam: {model: tiny, device: cpu}\n")  # tiny: no official checkpoint to find
    with serving(config, "--allow-random", timeout_s=90) as served:
        info = requests.get(f"{served.url}/info", timeout=30).json()
    output = "".join(served.output)
    assert "*** --allow-random: sam runs with RANDOM weights" in output
    assert "RANDOM WEIGHTS" in next(line for line in served.output if line.startswith("dtseg serve: http"))
    assert info["random_weights"] is True
