"""``dtseg segment --ray``: Ray Data in the test process (2 CPUs) gives the outputs of a local run."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dtseg.cli import main
from dtseg.cli.ledger import LEDGER_NAME

ray = pytest.importorskip("ray")
CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture
def folder(tmp_path, small_frame) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(5):
        cv2.imwrite(str(images / f"im{i}.png"), np.roll(small_frame, 11 * i, axis=1)[:, :, ::-1])
    (images / "im2_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return images


def run(folder: Path, out: Path, checkpoint: Path, *extra: str) -> int:
    return main(["segment", str(folder), "--config", str(CONFIGS / "points.yaml"), "--out", str(out),
                 "--sam-checkpoint", str(checkpoint), "--set", "sam.model=tiny", "--device", "cpu",
                 "--set", "sam.threads=1", "--set", "batch_size=2",
                 "--set", "sinks=[json, {coco: {indent: 1}}, masks_png]",
                 "--set", "prompts.points.objects=[{points: [[40, 40]], class_name: a}, {box: [10, 10, 90, 80]}]",
                 *extra])


def contents(out: Path) -> dict[str, object]:
    files: dict[str, object] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != LEDGER_NAME):  # local runs' bookkeeping
        name = str(path.relative_to(out))
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            data.get("info", {}).pop("date_created", None)  # the COCO file's creation time
            files[name] = data
        else:
            files[name] = path.read_bytes()
    return files


def test_ray_writes_what_a_local_run_writes(local_ray, folder, tmp_path, tiny_sam_checkpoint, capsys):
    assert run(folder, tmp_path / "local", tiny_sam_checkpoint) == 1  # the broken file fails the run
    local_err = capsys.readouterr().err
    assert run(folder, tmp_path / "ray", tiny_sam_checkpoint, "--ray", "--ray-actors", "2") == 1
    ray_err = capsys.readouterr().err
    assert "6 images on Ray Data: 2 actors, 1 CPU each" in ray_err
    local, remote = contents(tmp_path / "local"), contents(tmp_path / "ray")
    assert sorted(local) == sorted(remote) and len([n for n in local if n.startswith("json/")]) == 5
    assert local == remote
    coco = remote["coco.json"]
    assert [im["file_name"] for im in coco["images"]] == [f"im{i}" for i in range(5)]  # input order
    for err in (local_err, ray_err):
        assert f"error: {folder / 'im2_broken.jpg'}: image: not a decodable image" in err
        assert "segmented 5 of 6 images" in err and "(5 encoder passes)" in err


def test_ray_with_a_config_error_fails_before_starting(local_ray, folder, tmp_path, tiny_sam_checkpoint, capsys):
    code = run(folder, tmp_path / "out", tiny_sam_checkpoint, "--ray", "--set", "sinks=[nope]")
    assert code == 2 and "nope" in capsys.readouterr().err


def test_the_driver_gets_real_frames_only_where_a_per_run_sink_needs_pixels(small_frame):
    from dtseg.cli.ray_run import driver_results, pack
    from dtseg.prompts import Prompts
    from dtseg.runner import Item, RunSummary, describe
    from tests.fakes import FakeEngine

    detections = FakeEngine().segment(small_frame, Prompts.from_objects([{"box": [20, 20, 60, 60]}]))
    items = [Item("a.png", "a"), Item("b.png", "b"), Item("c.png", "c")]
    rows = [{"index": 0, "error": None, "height": 120, "width": 160, "encoder_calls": 1, "random_label": "",
             "result": pack(detections, True, small_frame)},
            {"index": 2, "error": "image: not a decodable image", "height": -1, "width": -1, "encoder_calls": 0,
             "random_label": "", "result": None},
            {"index": 1, "error": None, "height": 120, "width": 160, "encoder_calls": 1, "random_label": "RANDOM",
             "result": pack(detections, False, None)}]
    summary = RunSummary(Path("out"))
    (a, frame_a, got_a), (c, frame_c, error), (b, frame_b, got_b) = driver_results(rows, items, summary)
    assert (a.name, b.name, c.name) == ("a", "b", "c")
    np.testing.assert_array_equal(frame_a, small_frame)  # shipped: a sink reads its pixels
    np.testing.assert_array_equal(got_a.mask, detections.mask)
    assert frame_b.shape == small_frame.shape and not frame_b.flags.writeable and frame_b.base is not None
    assert got_b.mask is None and len(got_b) == len(detections)  # no per-run sink: no masks either
    assert frame_c is None and describe(error) == "image: not a decodable image"
    assert summary.encoder_calls == 2 and summary.random_weights == "RANDOM"
