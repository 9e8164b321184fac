"""``dtseg segment`` end to end, in-process, with a tiny random SAM checkpoint (and a random-init
YOLO from ``yolov8n.yaml``): outputs, per-image failures, exit codes."""

from __future__ import annotations

import functools
import http.server
import json
import re
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from dtseg.cli import main
from dtseg.engine import SamEngine
from dtseg.errors import RandomWeightsWarning
from dtseg.masks import polygons_to_mask, rle_to_mask

CONFIGS = Path(__file__).parents[2] / "configs"
RANDOM_YOLO = ["--set", "prompts.yolo.model=yolov8n.yaml", "--set", "prompts.yolo.conf=0.0001",
               "--set", "prompts.yolo.imgsz=160", "--set", "prompts.yolo.max_det=2"]

PROBE_SINK = '''
import os
from dtseg.hookspecs import hookimpl


class Probe:
    """Logs, at each write, which JSON files already exist: outputs must not wait for the end."""

    def __init__(self, config, out_dir):
        self.out_dir = out_dir

    def write(self, name, frame, detections):
        done = sorted(os.listdir(self.out_dir / "json")) if (self.out_dir / "json").exists() else []
        with open(self.out_dir / "probe.log", "a") as log:
            log.write(f"{name}: {','.join(done)}\\n")

    def close(self):
        pass


@hookimpl
def dtseg_register_sinks(register):
    register("probe", Probe)
'''


def sam_options(checkpoint: Path) -> list[str]:
    return ["--sam-checkpoint", str(checkpoint), "--set", "sam.model=tiny", "--device", "cpu"]


def test_default_config_on_bus_jpg_writes_json_that_matches_the_masks(tmp_path, bus_jpg, tiny_sam_checkpoint, capsys):
    out = tmp_path / "out"
    code = main(["segment", str(bus_jpg), "--config", str(CONFIGS / "default.yaml"), "--out", str(out),
                 *sam_options(tiny_sam_checkpoint), *RANDOM_YOLO,
                 "--set", "sinks=[{annotated: {}}, {json: {}}, {masks_png: {}}]"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "segmented 1 of 1 image" in err and "NOTE: RANDOM WEIGHTS (yolo)" in err
    picture = cv2.imread(str(out / "annotated" / "bus.png"))
    assert picture.shape == (1080, 810, 3)
    record = json.loads((out / "json" / "bus.json").read_text())
    from ultralytics.utils import ROOT, YAML

    coco_names = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
    assert record["image"] == {"name": "bus", "width": 810, "height": 1080}
    objects = record["objects"]
    assert len(objects) == 2 and len(list((out / "masks").glob("bus_*.png"))) == 2
    for i, obj in enumerate(objects):
        mask = cv2.imread(str(out / "masks" / f"bus_{i}.png"), cv2.IMREAD_UNCHANGED) > 0
        np.testing.assert_array_equal(rle_to_mask(obj["rle"]), mask)
        np.testing.assert_array_equal(polygons_to_mask(obj["polygons"], (1080, 810)), mask)
        assert obj["area"] == mask.sum()
        assert 0 < obj["confidence"] < 1  # the detector's
        assert obj["class_name"] == coco_names[obj["class_id"]]  # a random yolov8n.yaml names classes as COCO
        assert obj["prompt"]["box"] == obj["data"]["detector_box"]  # prompt: box


@pytest.fixture
def image_folder(tmp_path, small_frame) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), small_frame[:, :, ::-1])
    (folder / "b_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cv2.imwrite(str(folder / "c.png"), small_frame[::-1, :, ::-1])
    (folder / "notes.txt").write_text("not an image, not a source")
    return folder


@pytest.fixture
def http_folder(image_folder):
    """Serves ``image_folder`` on http://127.0.0.1:<port>/ for the test."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep the server's access log out of the CLI's stderr
            pass

    handler = functools.partial(Quiet, directory=str(image_folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_corrupt_file_is_reported_and_skipped_and_the_rest_still_run(tmp_path, image_folder, http_folder,
                                                                       tiny_sam_checkpoint, capsys):
    out = tmp_path / "out"
    (tmp_path / "plugs").mkdir()
    (tmp_path / "plugs" / "probe.py").write_text(PROBE_SINK)
    code = main(["segment", str(image_folder), f"{http_folder}/a.png", str(tmp_path / "nothing*.png"),
                 "--config", str(CONFIGS / "points.yaml"), "--out", str(out), *sam_options(tiny_sam_checkpoint),
                 "--set", "prompts.points.objects=[{points: [[40, 40]]}]", "--set", "sinks=[probe, json]",
                 "--plugins-dir", str(tmp_path / "plugs")])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in (out / "json").iterdir()) == ["a.json", "a_2.json", "c.json"]
    assert f"error: {image_folder / 'b_broken.jpg'}: image: not a decodable image" in err
    assert f"{tmp_path / 'nothing*.png'}: no such file, folder or matching glob" in err
    assert "segmented 3 of 5 images" in err and "2 failed" in err
    # each image's JSON existed before the next image was written
    assert (out / "probe.log").read_text().splitlines() == ["a: ", "c: a.json", "a_2: a.json,c.json"]
    from_url = json.loads((out / "json" / "a_2.json").read_text())
    assert from_url["objects"][0]["prompt"]["points"] == [[40.0, 40.0]]
    assert from_url["objects"][0]["rle"] == json.loads((out / "json" / "a.json").read_text())["objects"][0]["rle"]


PICKY_PROVIDER = '''
from dtseg.config import StrictModel
from dtseg.hookspecs import hookimpl
from dtseg.prompts import Prompts


class Picky:
    """One point per image; refuses images whose top-left pixel is black."""

    class Config(StrictModel):
        pass

    def __init__(self, config):
        pass

    def __call__(self, frame, prompts):
        if not frame[0, 0].any():
            raise ValueError("a black corner")
        return Prompts.from_objects([{"points": [[40, 40]]}])


@hookimpl
def dtseg_register_prompt_providers(register):
    register("picky", Picky)
'''


def record_encoder_batches(monkeypatch, fail_above: int | None = None) -> list[int]:
    """Record the number of images of every ``SamEngine.embed_images`` call; optionally fail
    (like an out-of-memory error) on calls with more than ``fail_above`` images."""
    sizes: list[int] = []
    embed_images = SamEngine.embed_images

    def recorded(self, images, *args, **kwargs):
        sizes.append(len(images))
        if fail_above is not None and len(images) > fail_above:
            raise MemoryError("not enough memory for this batch")
        return embed_images(self, images, *args, **kwargs)

    monkeypatch.setattr(SamEngine, "embed_images", recorded)
    return sizes


def test_batched_run_matches_one_by_one_and_a_failure_costs_only_its_image(tmp_path, small_frame, monkeypatch,
                                                                          tiny_sam_checkpoint, capsys):
    sizes = record_encoder_batches(monkeypatch)
    images, plugs = tmp_path / "images", tmp_path / "plugs"
    images.mkdir(), plugs.mkdir()
    (plugs / "picky.py").write_text(PICKY_PROVIDER)
    for i, name in enumerate("abcde"):
        frame = np.roll(small_frame, 9 * i, axis=1)
        frame[0, 0] = 0 if name == "b" else 255
        cv2.imwrite(str(images / f"{name}.png"), frame)
    outputs, batches = {}, {}
    for batch in (1, 3):
        sizes.clear()
        out = tmp_path / f"out{batch}"
        code = main(["segment", str(images), "--out", str(out), *sam_options(tiny_sam_checkpoint),
                     "--plugins-dir", str(plugs), "--set", "prompts=[picky]", "--set", "sinks=[json]",
                     "--set", f"batch_size={batch}"])
        err = capsys.readouterr().err
        assert code == 1
        assert f"error: {images / 'b.png'}: ValueError: a black corner" in err
        assert "segmented 4 of 5 images" in err
        outputs[batch] = {p.name: json.loads(p.read_text())["objects"] for p in (out / "json").iterdir()}
        batches[batch] = list(sizes)
    assert batches == {1: [1, 1, 1, 1], 3: [1, 1, 2]}  # a, c alone after b failed their batch; d and e together
    assert sorted(outputs[3]) == ["a.json", "c.json", "d.json", "e.json"]
    for name, objects in outputs[1].items():
        assert objects[0]["rle"] == outputs[3][name][0]["rle"]
        assert abs(objects[0]["sam_score"] - outputs[3][name][0]["sam_score"]) < 1e-4


def test_all_good_images_exit_zero(tmp_path, small_frame, tiny_sam_checkpoint, capsys):
    cv2.imwrite(str(tmp_path / "one.png"), small_frame)
    code = main(["segment", str(tmp_path / "*.png"), "--config", str(CONFIGS / "points.yaml"), "--out",
                 str(tmp_path / "out"), *sam_options(tiny_sam_checkpoint), "--set", "sinks=[json]",
                 "--set", "prompts.points.objects=[{box: [10, 10, 60, 60]}]"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "json" / "one.json").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--set", "prompts.points.objects.0.colour=red"], (r"points\.yaml: invalid configuration\n  "
                                                       r"prompts\[0\]\.points\.objects\.0\.colour: unknown key")),
    (["--set", "sam.checkpoint=/nope/sam.pth"], "checkpoint file not found: /nope/sam.pth"),
    (["--strict", "--plugins-dir", "{tmp}"], "bad.py failed to load: ZeroDivisionError"),
])
def test_setup_errors_exit_2_with_a_readable_message(tmp_path, small_frame, extra, message, capsys):
    cv2.imwrite(str(tmp_path / "one.png"), small_frame)
    (tmp_path / "bad.py").write_text("1 / 0\n")
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    code = main(["segment", str(tmp_path / "one.png"), "--config", str(CONFIGS / "points.yaml"),
                 "--set", "sam.model=tiny", "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("dtseg: error: ") and "Traceback" not in err
    assert re.search(message, err), err


def test_random_sam_weights_are_reported_by_the_cli_not_repeated_as_a_python_warning(tmp_path, small_frame, capsys,
                                                                                   caplog):
    cv2.imwrite(str(tmp_path / "one.png"), small_frame)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code = main(["segment", str(tmp_path / "one.png"), "--config", str(CONFIGS / "points.yaml"), "--out",
                     str(tmp_path / "out"), "--device", "cpu", "--set", "sam.model=tiny", "--set",
                     "sam.checkpoint=random", "--set", "sinks=[json]",
                     "--set", "prompts.points.objects=[{points: [[40, 40]]}]"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.rstrip().endswith("NOTE: RANDOM WEIGHTS (sam): boxes and masks are meaningless")
    assert "*** RANDOM WEIGHTS (sam): boxes and masks are meaningless ***" in caplog.text
    assert not [w for w in seen if issubclass(w.category, RandomWeightsWarning)]


def test_a_batch_that_fails_only_as_a_batch_falls_back_to_one_by_one_for_the_rest(tmp_path, small_frame, monkeypatch,
                                                                                  tiny_sam_checkpoint, capsys, caplog):
    sizes = record_encoder_batches(monkeypatch, fail_above=1)
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.roll(small_frame, 7 * i, axis=0))
    code = main(["segment", *(str(tmp_path / f"{i}.png") for i in range(5)), "--config", str(CONFIGS / "points.yaml"),
                 "--out", str(tmp_path / "out"), *sam_options(tiny_sam_checkpoint), "--set", "sinks=[json]",
                 "--set", "prompts.points.objects=[{points: [[40, 40]]}]", "--set", "batch_size=2"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "segmented 5 of 5 images" in err
    assert len(list((tmp_path / "out" / "json").iterdir())) == 5
    assert sizes == [2, 1, 1, 1, 1, 1]  # the first batch failed; its two images alone, then one at a time
    assert "batch_size 1 from here on" in caplog.text
