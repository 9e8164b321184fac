"""Re-runs of ``dtseg segment`` that pay no encoder pass: ``--cache-dir``, and Redis across processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dtseg.cli import main

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture
def images(tmp_path, small_frame) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"im{i}.png"), np.roll(small_frame, 9 * i, axis=1)[:, :, ::-1])
    return folder


def options(checkpoint: Path, out: Path) -> list[str]:
    return ["--config", str(CONFIGS / "points.yaml"), "--out", str(out), "--sam-checkpoint", str(checkpoint),
            "--set", "sam.model=tiny", "--device", "cpu", "--set", "sinks=[json]",
            "--set", "prompts.points.objects=[{points: [[40, 40]]}, {box: [10, 10, 90, 80]}]"]


def outputs(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((out / "json").iterdir())}


def test_a_rerun_with_cache_dir_pays_no_encoder_pass_and_writes_the_same(tmp_path, images, tiny_sam_checkpoint,
                                                                        capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --cache-dir is relative to the current folder
    assert main(["segment", str(images), "--cache-dir", "emb", *options(tiny_sam_checkpoint, tmp_path / "one")]) == 0
    assert "(3 encoder passes)" in capsys.readouterr().err
    assert len(list((tmp_path / "emb").rglob("embedding-*.safetensors"))) == 3
    assert main(["segment", str(images), "--cache-dir", "emb", *options(tiny_sam_checkpoint, tmp_path / "two")]) == 0
    assert "segmented 3 of 3 images" in (err := capsys.readouterr().err) and "(0 encoder passes)" in err
    assert outputs(tmp_path / "one") == outputs(tmp_path / "two")


def test_a_rerun_in_another_process_finds_the_embeddings_in_redis(tmp_path, images, tiny_sam_checkpoint,
                                                                  redis_server):
    def run(out: str) -> str:
        done = subprocess.run([sys.executable, "-m", "dtseg", "segment", str(images), "--set",
                               f"cache.redis_url={redis_server.url}", *options(tiny_sam_checkpoint, tmp_path / out)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "(3 encoder passes)" in run("one")
    assert "(0 encoder passes)" in run("two")
    assert outputs(tmp_path / "one") == outputs(tmp_path / "two")


def test_an_unreachable_redis_is_a_clear_error(tmp_path, images, tiny_sam_checkpoint, redis_server, capsys):
    redis_server.stop()
    code = main(["segment", str(images), "--set", f"cache.redis_url={redis_server.url}",
                 *options(tiny_sam_checkpoint, tmp_path / "out")])
    assert code == 2 and f"cannot reach Redis at {redis_server.url}" in capsys.readouterr().err


def test_a_sam3_rerun_with_cache_dir_pays_no_encoder_pass(tmp_path, images, capsys, monkeypatch):
    """SAM 3 (tiny_sam3, random weights seeded alike in both runs): the cached embedding holds
    all six feature maps (the interactive decoder's three, the detector's three), so the rerun
    decodes from disk alone and writes the same."""
    from safetensors import safe_open

    monkeypatch.chdir(tmp_path)
    sam3 = ["--config", str(CONFIGS / "points.yaml"), "--set", "sam.model=tiny_sam3", "--allow-random",
            "--device", "cpu", "--set", "sinks=[json]", "--cache-dir", "emb",
            "--set", "prompts.points.objects=[{points: [[40, 40]]}, {box: [10, 10, 90, 80]}]"]
    assert main(["segment", str(images), "--out", str(tmp_path / "one"), *sam3]) == 0
    assert "(3 encoder passes)" in capsys.readouterr().err
    files = sorted((tmp_path / "emb").rglob("embedding-*.safetensors"))
    assert len(files) == 3
    with safe_open(str(files[0]), "pt") as stored:
        names = {key.rpartition("/")[2] for key in stored.keys()}  # noqa: SIM118 - safe_open is no mapping
    assert {"image_embed", "high_res_0", "high_res_1", "detector_0", "detector_1", "detector_2"} <= names
    assert main(["segment", str(images), "--out", str(tmp_path / "two"), *sam3]) == 0
    assert "segmented 3 of 3 images" in (err := capsys.readouterr().err) and "(0 encoder passes)" in err
    assert outputs(tmp_path / "one") == outputs(tmp_path / "two")
