"""``dtseg labelstudio-config``: a label config, parsed back by label-studio-sdk, with the pipeline's classes."""

from __future__ import annotations

from pathlib import Path

import yaml

from dtseg.cli import main
from dtseg.labelstudio.label_config import parse_label_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_points_pipeline_classes_in_order_once(capsys) -> None:
    assert main(["labelstudio-config", "--config", str(CONFIGS / "points.yaml")]) == 0
    config = parse_label_config(capsys.readouterr().out)
    assert config.labels == ("bus", "person") and config.output_type == "brushlabels"


def test_detector_classes_kept_by_its_classes_option_as_polygons(capsys) -> None:
    argv = ["labelstudio-config", "--config", str(CONFIGS / "default.yaml"), "--set", "prompts.yolo.model=yolov8n.yaml",
            "--set", "prompts.yolo.classes=[bus, person]", "--polygon", "--image-key", "photo"]
    assert main(argv) == 0
    config = parse_label_config(capsys.readouterr().out)
    assert config.labels == ("bus", "person")  # the classes option, of the 80 COCO classes
    assert config.output_type == "polygonlabels" and config.value_key == "photo"


def test_labels_given_and_pipelines_without_names(tmp_path: Path, capsys) -> None:
    assert main(["labelstudio-config", "--config", str(CONFIGS / "points.yaml"), "--labels", "car", "tree"]) == 0
    assert parse_label_config(capsys.readouterr().out).labels == ("car", "tree")
    unnamed = tmp_path / "everything.yaml"
    unnamed.write_text(yaml.safe_dump({"prompts": [{"everything": {}}]}))
    assert main(["labelstudio-config", "--config", str(unnamed)]) == 2
    assert "--labels" in capsys.readouterr().err
