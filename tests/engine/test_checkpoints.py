"""Checkpoint resolution, download verification, offline errors, loading, device choice."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import replace

import pytest
import torch

from dtseg import CheckpointError, CheckpointNotFoundError, ChecksumMismatchError, SamEngine
from dtseg.engine import checkpoints as models
from dtseg.engine.checkpoints import TINY_SPEC, RandomWeightsWarning, build_sam, resolve_checkpoint, save_checkpoint
from dtseg.families.sam2.family import Sam2Model
from dtseg.plugins import default_registry
from dtseg.runtime.device import select_device, select_dtype


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DTSEG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DTSEG_OFFLINE", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return save_checkpoint(build_sam(TINY_SPEC, "random", seed=7), tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def fake_official(monkeypatch, url: str, sha256: str):
    """Point the vit_b registry entry at ``url`` (a file:// or loopback URL)."""
    known = default_registry().models["vit_b"]
    official = replace(known.official, url=url, sha256=sha256)
    monkeypatch.setitem(default_registry().models, "vit_b", known._replace(official=official))
    return official


def test_saved_checkpoint_loads_into_the_same_weights(tiny_file):
    engine = SamEngine.load("tiny", tiny_file, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        expected = build_sam(TINY_SPEC, "random", seed=7).state_dict()
    for key, value in engine.model.net.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    assert not engine.random_weights


@pytest.mark.parametrize("key", ["model", "state_dict"])
def test_checkpoint_nested_under_a_training_key_loads_its_weights(tmp_path, tiny_file, key):
    saved = torch.load(tiny_file, weights_only=True)  # seed 7; SamEngine.load builds seed 0 first
    nested = tmp_path / "nested.pth"
    torch.save({key: saved, "epoch": 3, "optimizer": {"lr": 1e-4}}, nested)  # as training loops save
    engine = SamEngine.load("tiny", nested, device="cpu")
    loaded = engine.model.net.state_dict()
    assert loaded.keys() == saved.keys()
    for name, value in saved.items():
        torch.testing.assert_close(loaded[name], value)
    assert not engine.random_weights


def test_checkpoint_for_another_architecture_is_a_clear_error(tiny_file):
    spec = {"encoder_embed_dim": 96, "encoder_depth": 2, "encoder_num_heads": 2, "encoder_global_attn_indexes": [1]}
    with pytest.raises(CheckpointError, match="does not match the chosen architecture"):
        SamEngine.load(spec, tiny_file, device="cpu")


def test_garbage_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        SamEngine.load("tiny", bad, device="cpu")


def test_missing_explicit_path_names_it(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match=r"nope\.pth"):
        resolve_checkpoint("vit_b", tmp_path / "nope.pth")


def test_random_checkpoint_warns_loudly():
    with pytest.warns(RandomWeightsWarning, match="masks are meaningless"):
        engine = SamEngine.load("tiny", "random", device="cpu")
    assert engine.random_weights and engine.info()["random_weights"]


def test_offline_error_names_the_url_and_the_path(home, monkeypatch):
    official = fake_official(monkeypatch, "http://127.0.0.1:9/sam_vit_b_01ec64.pth", "0" * 64)
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_checkpoint("vit_b")
    message = str(info.value)
    assert official.url in message
    assert str(home / "checkpoints" / official.filename) in message
    assert "checkpoint='random'" in message and "--allow-random" not in message
    assert "--allow-random" in info.value.spelled("cli") and "--sam-checkpoint PATH" in info.value.spelled("cli")
    assert "sam.checkpoint: random" in info.value.spelled("config")
    assert not (home / "checkpoints" / (official.filename + ".part")).exists()


def test_offline_switch_skips_the_download(home, monkeypatch):
    monkeypatch.setenv("DTSEG_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError, match="DTSEG_OFFLINE"):
        resolve_checkpoint("vit_b")


def test_real_official_urls_fail_offline_with_the_same_error(home):
    """On this network-less machine the real URL fails fast and says what to do."""
    with pytest.raises(CheckpointNotFoundError, match=r"dl\.fbaipublicfiles\.com"):
        resolve_checkpoint("vit_b")


def test_download_verifies_sha256_and_discards_a_mismatch(home, monkeypatch, tiny_file):
    fake_official(monkeypatch, tiny_file.as_uri(), "f" * 64)
    with pytest.raises(ChecksumMismatchError, match="sha256"):
        resolve_checkpoint("vit_b")
    assert not list((home / "checkpoints").glob("*.pth*"))


def test_download_with_the_right_sha256_lands_in_the_cache(home, monkeypatch, tiny_file):
    digest = hashlib.sha256(tiny_file.read_bytes()).hexdigest()
    official = fake_official(monkeypatch, tiny_file.as_uri(), digest)
    path = resolve_checkpoint("vit_b")
    assert path == home / "checkpoints" / official.filename
    assert path.read_bytes() == tiny_file.read_bytes()
    assert resolve_checkpoint("vit_b") == path  # second time: from the cache, verified by marker


def test_corrupt_file_in_the_cache_is_refused(home, monkeypatch, tiny_file):
    official = fake_official(monkeypatch, "http://127.0.0.1:9/x.pth", "a" * 64)
    (home / "checkpoints").mkdir(parents=True)
    (home / "checkpoints" / official.filename).write_bytes(tiny_file.read_bytes())
    with pytest.raises(ChecksumMismatchError, match="delete it"):
        resolve_checkpoint("vit_b")


def test_unknown_model_and_bad_spec_are_value_errors():
    known = r"unknown model 'vit_xxl'; known models: vit_h, vit_l, vit_b, mobile_sam, sam2\.1_t"
    with pytest.raises(ValueError, match=known):
        SamEngine.load("vit_xxl", "random")
    with pytest.raises(ValueError, match="divisible"):
        models.SamSpec(65, 2, 2, (1,))


def test_custom_architecture_needs_an_explicit_checkpoint():
    with pytest.raises(CheckpointNotFoundError, match="checkpoint='random'"):
        resolve_checkpoint("tiny")


def test_device_and_dtype_choice():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            select_device("cuda")
    assert select_dtype("fp16", torch.device("cpu")) is torch.float16  # autocast on the CPU
    assert select_dtype(torch.bfloat16, torch.device("cpu")) is torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        select_dtype(torch.float64, torch.device("cpu"))
    with pytest.raises(ValueError, match="dtype"):
        select_dtype("fp8", torch.device("cpu"))
    assert select_dtype("fp32", torch.device("cpu")) is torch.float32


@pytest.fixture(scope="module")
def family_files(tmp_path_factory):
    """Each family's test-size model, saved as its official checkpoints are (SAM 2: under "model")."""
    folder = tmp_path_factory.mktemp("families")
    files = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        for name in ("tiny_mobile_sam", "tiny_sam2.1"):
            model = models.build_model(name, "random", seed=11)
            files[name] = folder / f"{name}.pt"
            state = model.net.state_dict()
            torch.save({"model": state} if name == "tiny_sam2.1" else state, files[name])
    return files


@pytest.mark.parametrize("name", ["tiny_mobile_sam", "tiny_sam2.1"])
def test_every_family_loads_its_saved_checkpoint(family_files, name):
    engine = SamEngine.load(name, family_files[name], device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        expected = models.build_model(name, "random", seed=11).net.state_dict()
    loaded = engine.model.net.state_dict()
    assert set(loaded) == set(expected) and not engine.random_weights
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value)


@pytest.mark.parametrize(("chosen", "file", "looks_like"), [
    ("tiny", "tiny_sam2.1", "tiny_sam2.1"),
    ("tiny_sam2.1", "tiny_mobile_sam", "tiny_mobile_sam"),
    ("tiny_mobile_sam", "tiny", "tiny"),
])
def test_a_checkpoint_of_another_model_names_the_model_it_looks_like(family_files, tiny_file, chosen, file, looks_like):
    path = tiny_file if file == "tiny" else family_files[file]
    with pytest.raises(CheckpointError, match=f"does not match the chosen architecture \\({chosen}\\).*looks like a "
                                              f"{looks_like} checkpoint: pass model={looks_like}"):
        SamEngine.load(chosen, path, device="cpu")


def test_save_checkpoint_takes_a_str_path(tmp_path, tiny_file):
    engine = SamEngine.load("tiny", tiny_file, device="cpu")
    path = save_checkpoint(engine.model, str(tmp_path / "again.pth"))
    assert path.read_bytes()[:2] == tiny_file.read_bytes()[:2] and SamEngine.load("tiny", str(path), device="cpu")


def test_ultralytics_repackaged_sam2_checkpoint_loads(tmp_path, monkeypatch):
    """ultralytics' ``sam2.1_t.pt`` is ``{"model": state}`` of its port of SAM2Base: same keys and shapes."""
    from ultralytics.models.sam import build

    monkeypatch.setattr(build, "_load_checkpoint", lambda model, checkpoint: model)  # random init, 2.1 layout
    path = tmp_path / "sam2.1_t.pt"
    torch.save({"model": build.build_sam2_t("sam2.1_t.pt").state_dict()}, path)
    engine = SamEngine.load("sam2.1_t", path, device="cpu")
    assert isinstance(engine.model, Sam2Model) and not engine.random_weights


def test_a_gated_checkpoint_says_how_to_get_it(home):
    """sam3.pt lives in the gated facebook/sam3 repository: without the file (the download is
    refused on this network-less machine) the error says to accept the licence and log in, or
    to put the file by hand at the exact path, or to pass --sam-checkpoint."""
    with pytest.raises(CheckpointNotFoundError) as info:
        SamEngine.load("sam3", device="cpu")
    message = info.value.spelled("cli")
    assert "gated Hugging Face repository" in message and "SAM License" in message
    assert "https://huggingface.co/facebook/sam3" in message and "HF_TOKEN" in message
    assert str(home / "checkpoints" / "sam3.pt") in message and "--sam-checkpoint PATH" in message
    assert "None" not in message  # no sha256 and no size are published: the message states neither


def test_an_ungated_checkpoint_says_nothing_of_licences(home, monkeypatch):
    monkeypatch.setenv("DTSEG_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_checkpoint("vit_b")
    assert "gated Hugging Face" not in str(info.value) and "HF_TOKEN" not in str(info.value)


def test_a_gated_download_sends_the_token(home, monkeypatch):
    """A gated file's request carries ``HF_TOKEN``; the server's refusal (401) becomes the gated advice."""
    import http.server
    import threading

    seen = []

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        known = default_registry().models["sam3"]
        url = f"http://127.0.0.1:{server.server_port}/facebook/sam3/resolve/main/sam3.pt"
        monkeypatch.setitem(default_registry().models, "sam3",
                            known._replace(official=replace(known.official, url=url)))
        monkeypatch.setenv("HF_TOKEN", "hf_test")
        with pytest.raises(CheckpointNotFoundError, match="gated Hugging Face repository") as info:
            resolve_checkpoint("sam3")
    finally:
        server.shutdown()
    assert seen == ["Bearer hf_test"]
    assert "Unauthorized" in str(info.value) and url in str(info.value)
