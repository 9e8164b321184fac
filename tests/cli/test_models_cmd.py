"""``dtseg models``: every family's models, their checkpoints and whether they are cached."""

from __future__ import annotations

import json

import torch

from dtseg.cli import main
from dtseg.families import resolve_model
from dtseg.runtime.precision import plan


def test_lists_every_model_with_its_url_and_presence(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DTSEG_HOME", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "mobile_sam.pt").write_bytes(b"x")
    assert main(["models", "--json"]) == 0
    table = {row["model"]: row for row in json.loads(capsys.readouterr().out)}
    assert {"vit_b", "mobile_sam", "sam2.1_t", "sam2.1_l", "tiny", "tiny_sam2.1"} <= set(table)
    assert table["mobile_sam"]["present"] is True and table["vit_b"]["present"] is False
    official = resolve_model("sam2.1_t").official
    assert official is not None
    assert table["sam2.1_t"]["family"] == "sam2.1" and table["sam2.1_t"]["url"] == official.url
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "sam2.1_b+" in text and "mobile_sam.pt" in text and str(tmp_path / "checkpoints") in text
    how = {"native": "bf16 native)", "emulated": "bf16 emulated)", "fallback": "bf16 fallback: computed in float32)"}
    assert how[plan(torch.device("cpu"), torch.bfloat16).path] in text.splitlines()[-1]  # the dtype auto line
