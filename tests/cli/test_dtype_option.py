"""``--dtype`` on segment / video / serve sets ``sam.dtype``, and the first line says the choice."""

from __future__ import annotations

import argparse

import pytest

from dtseg.cli import common, serve
from dtseg.cli.segment import add_parser as add_segment
from dtseg.pipeline import load_pipeline_config

POINT_PROMPTS = [{"points": {"objects": [{"points": [[5, 5]]}]}}]


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="dtseg")
    subparsers = root.add_subparsers(dest="command")
    add_segment(subparsers)
    serve.add_parser(subparsers)
    return root


@pytest.mark.parametrize("dtype", ["auto", "fp32", "bf16", "fp16"])
def test_dtype_sets_sam_dtype(dtype):
    args = parser().parse_args(["segment", "x.jpg", "--dtype", dtype])
    items = common.overrides(args)
    assert f"sam.dtype={dtype}" in items
    assert load_pipeline_config({}, items).config.sam.dtype == dtype
    serve_args = parser().parse_args(["serve", "--dtype", dtype])
    assert f"sam.dtype={dtype}" in serve._overrides(serve_args)


def test_bad_dtype_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["segment", "x.jpg", "--dtype", "fp64"])
    assert "invalid choice" in capsys.readouterr().err


def test_first_line_names_model_device_and_precision(tiny_sam_config, tmp_path, capsys):
    import yaml

    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump({"sam": tiny_sam_config, "prompts": POINT_PROMPTS}))
    args = parser().parse_args(["segment", "x.jpg", "-c", str(config), "--dtype", "bf16"])
    pipeline = common.build_pipeline(args)
    assert pipeline.engine.dtype_name == "bfloat16"
    first = capsys.readouterr().err.splitlines()[0]
    path = pipeline.engine.info()["dtype_path"]  # what this CPU runs bf16 as (dtseg.runtime.precision.plan)
    how = {"native": "bfloat16 (native; autocast, fp32 weights); auto on this cpu: ",
           "emulated": "bfloat16 (emulated: no bfloat16 arithmetic on this CPU (",
           "fallback": "bfloat16 features, computed in float32 "
                       "(fallback: no oneDNN bfloat16 kernels on this CPU ("}[path]
    assert first.startswith(f"dtseg: tiny on cpu, {how}")
    assert first.endswith("; fast encoder and decoder")


def test_first_line_names_the_passes(tiny_sam_config, tmp_path, capsys):
    import yaml

    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump({"sam": tiny_sam_config, "prompts": POINT_PROMPTS}))
    args = parser().parse_args(["segment", "x.jpg", "-c", str(config), "--set", "sam.decoder=reference"])
    pipeline = common.build_pipeline(args)
    assert pipeline.engine.info()["decoder"] == "reference"
    assert capsys.readouterr().err.splitlines()[0].endswith("; fast encoder, reference decoder")
