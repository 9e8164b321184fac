"""``dtseg plugins``: every provider and sink, its origin and its options."""

from __future__ import annotations

import json

from dtseg.cli import main

GRID = '''
from dtseg.config import StrictModel
from dtseg.hookspecs import hookimpl
from pydantic import Field


class Grid:
    class Config(StrictModel):
        n: int = Field(2, description="cells per side")

    def __init__(self, config):
        pass

    def __call__(self, frame, prompts):
        return prompts


@hookimpl
def dtseg_register_prompt_providers(register):
    register("grid", Grid)
'''


def test_lists_providers_and_sinks_with_origin_and_fields(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    providers, sinks = out.split("Sinks:")
    assert "  yolo  [built-in, entry point yolo = dtseg_plugins.yolo (dtseg 0.1.0)]" in providers
    assert "      conf: float = 0.25  # minimum detector confidence" in providers
    assert "      prompt: Literal['box', 'center', 'box+center'] = 'box'" in providers
    assert "      objects: list[ObjectPrompt]  # the objects to segment" in providers  # required: no default
    for name in ("points", "zones"):
        assert f"  {name}  [built-in, entry point {name} = dtseg_plugins.{name}" in providers
    for name in ("annotated", "masks_png", "json", "coco"):
        assert f"  {name}  [built-in (dtseg.sinks)]" in sinks


def test_a_plugins_dir_and_a_broken_plugin_show_up(tmp_path, capsys):
    (tmp_path / "grid.py").write_text(GRID)
    (tmp_path / "broken.py").write_text("import not_installed_anywhere\n")
    assert main(["plugins", "--plugins-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"  grid  [file {tmp_path / 'grid.py'}]\n      n: int = 2  # cells per side" in out
    assert f"failed to load: file {tmp_path / 'broken.py'}: ModuleNotFoundError" in out
    assert main(["plugins", "--plugins-dir", str(tmp_path), "--strict"]) == 2
    assert "dtseg: error: plugin file" in capsys.readouterr().err


def test_json_output_and_plugins_named_in_a_config(tmp_path, capsys, monkeypatch):
    (tmp_path / "acme_grid.py").write_text(GRID)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "p.yaml"
    config.write_text("plugins: [acme_grid]\n")
    assert main(["plugins", "--config", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    grid = next(p for p in data["prompt_providers"] if p["name"] == "grid")
    assert grid["source"] == "module acme_grid" and grid["class"] == "acme_grid.Grid"
    assert grid["config"] == [{"name": "n", "type": "int", "required": False, "default": 2,
                               "description": "cells per side"}]
    assert {s["name"] for s in data["sinks"]} >= {"annotated", "json"} and data["failed"] == []
