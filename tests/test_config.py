"""Pipeline configs: the shipped configs validate, errors name file/key/expectation, relative
paths resolve against the config's folder, ``--set`` reaches into stage lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtseg.config import ConfigError, PipelineConfig, SamConfig, apply_overrides, validate
from dtseg.pipeline import Pipeline, load_pipeline_config
from dtseg.plugins import load_registry

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_the_four_documented_configs_exist():
    assert {p.name for p in CONFIGS} >= {"default.yaml", "yolo-centers.yaml", "points.yaml", "zones.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate_down_to_every_stage_and_sink(path: Path):
    loaded = load_pipeline_config(path)
    registry = load_registry(loaded.config.plugins_dir, loaded.config.plugins)
    for section, lookup in (("prompts", registry.provider), ("sinks", registry.sink)):
        for i, entry in enumerate(getattr(loaded.config, section)):
            (name, options), = entry.items()
            validate(lookup(name).config_model, options, str(path), prefix=f"{section}[{i}].{name}")


def test_defaults_are_yolo_boxes_into_annotated_and_json():
    config = PipelineConfig()
    assert config.prompts == [{"yolo": {}}] and config.sinks == [{"annotated": {}}, {"json": {}}]
    assert config.sam == SamConfig()


def test_unknown_keys_name_the_file_the_key_and_the_known_keys(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("sam: {modle: vit_b}\nprompt: []\n")
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid configuration")
    assert "sam.modle: unknown key; expected one of: model, checkpoint" in message
    assert "prompt: unknown key; expected one of: sam, plugins, plugins_dir, prompts, sinks" in message


def test_stage_option_errors_name_the_stage_and_the_expectation(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("prompts:\n  - yolo: {conf: lots, promt: box}\nsinks: []\n")
    with pytest.raises(ConfigError) as info:
        Pipeline.from_config(path, engine=object())
    message = str(info.value)
    assert f"{path}: invalid configuration" in message
    assert "prompts[0].yolo.conf: Input should be a valid number" in message and "'lots'" in message
    assert "prompts[0].yolo.promt: unknown key; expected one of: model, conf" in message


def test_sink_option_errors_are_found_before_any_image(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("prompts: [{points: {objects: [{points: [[1, 1]]}]}}]\nsinks: [{json: {indent: -1}}]\n")
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.json\.indent"):
        Pipeline.from_config(path, engine=object())


@pytest.mark.parametrize("prompts, message", [
    ([], "prompts: List should have at least 1 item"),
    ([{"yolo": {}, "zones": {}}], "entry 0: expected one name with its options"),
    ([42], "entry 0: expected one name"),
])
def test_stage_lists_are_checked(prompts, message):
    with pytest.raises(ConfigError, match=message):
        load_pipeline_config({"prompts": prompts})


def test_bare_names_and_empty_options_mean_no_options():
    config = load_pipeline_config({"prompts": ["yolo", {"zones": None}], "sinks": ["json"]}).config
    assert config.prompts == [{"yolo": {}}, {"zones": {}}] and config.sinks == [{"json": {}}]


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path):
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "weights.pt").write_bytes(b"x")
    path = folder / "p.yaml"
    path.write_text("sam: {checkpoint: sam.pth}\nplugins_dir: my_plugins\n"
                    "prompts: [{yolo: {model: weights.pt}}, {zones: {zones: [{polygon: [[0, 0], [1, 0], [1, 1]]}]}}]\n")
    loaded = load_pipeline_config(path)
    assert loaded.config.sam.checkpoint == str(folder / "sam.pth")
    assert loaded.config.plugins_dir == str(folder / "my_plugins")
    registry = load_registry()
    yolo = validate(registry.provider("yolo").config_model, loaded.config.prompts[0]["yolo"], str(path),
                    base_dir=loaded.base_dir)
    assert yolo.model == str(folder / "weights.pt")  # a file next to the config
    named = validate(registry.provider("yolo").config_model, {"model": "yolov8s.pt"}, str(path), base_dir=folder)
    assert named.model == "yolov8s.pt"  # no such file here: an ultralytics name, left alone
    assert load_pipeline_config({"sam": {"checkpoint": "rel.pth"}}).config.sam.checkpoint == "rel.pth"
    assert validate(SamConfig, {"checkpoint": "random"}, "x", base_dir=folder).checkpoint == "random"


def test_overrides_reach_stages_by_name_or_index():
    data = {"prompts": [{"yolo": {"conf": 0.2}}, {"zones": None}], "sam": {"model": "vit_b"}}
    apply_overrides(data, ["prompts.yolo.conf=0.5", "prompts.1.zones.anchor=center", "sam.device=cpu",
                           "prompts.yolo.classes=[person, 3]", "multimask_output=true"])
    assert data == {"prompts": [{"yolo": {"conf": 0.5, "classes": ["person", 3]}}, {"zones": {"anchor": "center"}}],
                    "sam": {"model": "vit_b", "device": "cpu"}, "multimask_output": True}


@pytest.mark.parametrize("override, message", [
    ("prompts.points.objects=[]", r"no entry named 'points' \(entries: \['yolo'\]\)"),
    ("prompts.5.conf=1", "index 5 is out of range"),
    ("sam.model.x=1", "'sam.model' is not a section"),
    ("novalue", "expected key=value"),
])
def test_bad_overrides_say_why(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides({"prompts": [{"yolo": {}}], "sam": {"model": "vit_b"}}, [override])


def test_overrides_apply_before_validation(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("prompts: [yolo]\n")
    loaded = load_pipeline_config(path, ["prompts.yolo.prompt=center", "sam.dtype=fp16"], device="cpu")
    assert loaded.config.prompts == [{"yolo": {"prompt": "center"}}]
    assert (loaded.config.sam.dtype, loaded.config.sam.device) == ("fp16", "cpu")
    with pytest.raises(ConfigError, match=r"sam\.dtype"):
        load_pipeline_config(path, ["sam.dtype=fp64"])


def test_overrides_reach_the_default_stages_when_the_config_omits_them():
    loaded = load_pipeline_config({}, ["prompts.yolo.conf=0.4", "sinks.json.indent=2"])
    assert loaded.config.prompts == [{"yolo": {"conf": 0.4}}]
    assert loaded.config.sinks == [{"annotated": {}}, {"json": {"indent": 2}}]
