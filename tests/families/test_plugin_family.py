"""A new family is one module and no edit to the core: ``tests/families/stretched_sam.py``,
installed as a third party's distribution is (an entry point in dtseg's group), is loaded,
segments, is listed, validates in configs and is named among the known models."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from dtseg import SamEngine
from dtseg.cli import main
from dtseg.config import SamConfig
from dtseg.errors import PromptError, RandomWeightsWarning
from dtseg.eta import embed_estimate
from dtseg.families import resolve_model
from dtseg.plugins import default_registry
from dtseg.prompts import Prompts
from tests.distributions import fake_distribution
from tests.families.stretched_sam import SIDE, StretchedSamModel
from tests.tiny import synthetic_image

SOURCE = "entry point stretched_sam = tests.families.stretched_sam (acme-sam 0.1.0)"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory):
    """``acme-sam 0.1.0`` installed: a distribution whose ``dtseg`` entry point is the module."""
    site = tmp_path_factory.mktemp("site")
    fake_distribution(site, "acme-sam", "0.1.0", {"stretched_sam": "tests.families.stretched_sam"})
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        default_registry.cache_clear()
        yield
    default_registry.cache_clear()  # the next registry is collected without it


def load(model: str, **options) -> SamEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return SamEngine.load(model, "random", device="cpu", **options)


@pytest.fixture(scope="module")
def engine(installed) -> SamEngine:
    return load("tiny_stretched_sam")


def test_it_is_registered_from_its_distribution(installed) -> None:
    family = default_registry().family("stretched_sam")
    assert family.source == SOURCE and family.cls is StretchedSamModel
    assert [m.name for m in family.known_models()] == ["stretched_sam_s", "tiny_stretched_sam"]


def test_it_loads_by_name_and_segments_in_its_own_geometry(engine: SamEngine) -> None:
    assert engine.family == "stretched_sam" and isinstance(engine.model, StretchedSamModel)
    assert engine.capabilities == StretchedSamModel.capabilities
    assert engine.capabilities.prompts == {"points", "boxes"} and engine.capabilities.lineage == "sam"
    image = synthetic_image(300, 200, seed=2)
    embedding = engine.embed_image(image)
    assert embedding.input_size == (SIDE, SIDE)  # stretched to the square, not the longest side
    assert embedding.embedding.shape == engine.embedding_shape == (256, SIDE // 16, SIDE // 16)
    prompts = Prompts.from_objects([{"box": [20, 30, 120, 160]}, {"points": [[50, 60]], "labels": [1]}])
    detections = engine.segment(embedding, prompts)
    assert detections.mask.shape == (2, 300, 200) and np.isfinite(detections.data["sam_score"]).all()
    result = engine.segment_image(image, boxes=[20, 30, 120, 160])
    assert result.low_res_logits.shape == (1, 3, SIDE // 4, SIDE // 4) and result.masks.shape == (1, 3, 300, 200)


def test_its_fast_passes_match_its_reference_modules(engine: SamEngine) -> None:
    """dtseg's fast ViT and decoder run at its 512 px input as at SAM's 1024."""
    reference = load("tiny_stretched_sam", encoder="reference", decoder="reference")
    image = synthetic_image(240, 320, seed=5)
    fast = engine.segment_image(image, point_coords=[[100, 80], [200, 150]], point_labels=[1, 0])
    slow = reference.segment_image(image, point_coords=[[100, 80], [200, 150]], point_labels=[1, 0])
    np.testing.assert_allclose(fast.low_res_logits, slow.low_res_logits, atol=1e-3)
    np.testing.assert_allclose(fast.scores, slow.scores, atol=1e-4)


def test_a_prompt_kind_it_does_not_take_is_refused(engine: SamEngine) -> None:
    image = synthetic_image(64, 64, seed=1)
    mask = np.zeros((SIDE // 4, SIDE // 4), np.float32)
    with pytest.raises(PromptError, match=r"mask_input: the stretched_sam family takes no masks \(it takes boxes, "
                                          r"points\)"):
        engine.segment_image(image, point_coords=[[10, 10]], point_labels=[1], mask_input=mask)


def test_dtseg_models_and_dtseg_plugins_list_it(installed, capsys) -> None:
    assert main(["models", "--json"]) == 0
    table = {row["model"]: row for row in json.loads(capsys.readouterr().out)}
    assert table["stretched_sam_s"]["family"] == table["tiny_stretched_sam"]["family"] == "stretched_sam"
    assert table["stretched_sam_s"]["input"] == SIDE and table["stretched_sam_s"]["licence"] == "MIT"
    assert table["tiny_stretched_sam"]["checkpoint"] is None
    assert main(["plugins", "--json"]) == 0
    families = {f["name"]: f for f in json.loads(capsys.readouterr().out)["model_families"]}
    assert families["stretched_sam"] == {"name": "stretched_sam",
                                         "class": "tests.families.stretched_sam.StretchedSamModel",
                                         "source": SOURCE, "models": ["stretched_sam_s", "tiny_stretched_sam"]}


def test_a_config_naming_it_validates_and_unknown_names_list_it(installed) -> None:
    assert SamConfig(model="tiny_stretched_sam").model == "tiny_stretched_sam"
    with pytest.raises(ValueError, match=r"unknown model 'stretched_sam_xl'; known models: .*stretched_sam_s, .*"
                                         r"tiny_stretched_sam"):
        SamConfig(model="stretched_sam_xl")
    with pytest.raises(ValueError, match=r"known models: .*tiny_stretched_sam"):
        resolve_model("stretched_sam_xl")


def test_the_encoder_time_comes_from_its_row(installed) -> None:
    """A row that states ``encoder_gflop`` gets an estimate; a test-size model none."""
    assert "(stretched_sam_s, float32: 20 GFLOP at " in (embed_estimate(load("stretched_sam_s")) or "")
    assert embed_estimate(load("tiny_stretched_sam")) is None

