"""Plugin discovery: entry points, a plugins folder, dotted modules, in-process plugins; broken
and duplicate plugins; misspelled hooks."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from dtseg.config import StrictModel
from dtseg.families.sam.family import SamModel
from dtseg.hookspecs import hookimpl
from dtseg.plugins import PluginError, Registry, get_plugin_manager, load_registry, register_plugin
from dtseg.prompts import Prompts
from tests.distributions import fake_distribution, write

PROVIDER = '''
from dtseg.hookspecs import hookimpl
from dtseg.prompts import Prompts


class {cls}:
    def __init__(self, config):
        self.config = config

    def __call__(self, frame, prompts):
        return Prompts.from_objects([{{"points": [[1, 1]]}}])


@hookimpl
def dtseg_register_prompt_providers(register):
    register("{name}", {cls})
'''


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path (modules put there are dropped from sys.modules afterwards)."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith(("acme", "broken", "dotted")):
            del sys.modules[name]


def test_builtin_providers_come_from_the_dtseg_entry_point_group():
    registry = load_registry()
    for name in ("points", "yolo", "zones"):
        info = registry.provider(name)
        assert f"entry point {name} = dtseg_plugins.{name}" in info.source
        assert "(dtseg 0.1.0)" in info.source and info.source.startswith("built-in")
        assert info.cls.__module__ == f"dtseg_plugins.{name}"


def test_an_installed_distribution_is_discovered_with_its_name_and_version(site: Path):
    write(site / "acme_prompts.py", PROVIDER.format(cls="Acme", name="acme"))
    fake_distribution(site, "acme-prompts", "1.2.3", {"acme": "acme_prompts"})
    info = load_registry().provider("acme")
    assert info.source == "entry point acme = acme_prompts (acme-prompts 1.2.3)"
    assert len(info.cls(info.config_model())(None, None)) == 1  # no Config given: an empty one


def test_a_broken_entry_point_warns_and_is_skipped_and_strict_fails(site: Path, caplog):
    write(site / "acme_ok.py", PROVIDER.format(cls="Ok", name="acme_ok"))
    write(site / "broken_plugin.py", "import this_module_does_not_exist\n")
    fake_distribution(site, "acme-mixed", "0.1", {"acme_ok": "acme_ok", "broken": "broken_plugin"})
    with caplog.at_level(logging.WARNING, logger="dtseg.plugins"):
        registry = load_registry()
    assert "acme_ok" in registry.providers and "yolo" in registry.providers  # the rest still load
    assert "entry point broken = broken_plugin (acme-mixed 0.1) failed to load" in caplog.text
    assert "this_module_does_not_exist" in caplog.text
    assert [s for s, _ in registry.failures] == ["entry point broken = broken_plugin (acme-mixed 0.1)"]
    with pytest.raises(PluginError, match=r"broken_plugin.*this_module_does_not_exist"):
        load_registry(strict=True)


def test_plugins_dir_files_load_under_a_namespaced_module_name(tmp_path: Path):
    plugin = write(tmp_path / "plugs" / "my-grid.py", PROVIDER.format(cls="Grid", name="grid"))
    write(tmp_path / "plugs" / "_private.py", "raise RuntimeError('never imported')\n")
    write(tmp_path / "plugs" / "notes.txt", "not a plugin")
    info = load_registry(plugins_dir=tmp_path / "plugs").provider("grid")
    assert info.source == f"file {plugin}"
    assert info.cls.__module__ == "dtseg_user_plugins.my_grid"
    assert sys.modules["dtseg_user_plugins.my_grid"].__file__ == str(plugin)


def test_a_broken_plugin_file_is_skipped_unless_strict(tmp_path: Path, caplog):
    write(tmp_path / "plugs" / "good.py", PROVIDER.format(cls="Good", name="good"))
    write(tmp_path / "plugs" / "bad.py", "def oops(:\n")
    with caplog.at_level(logging.WARNING, logger="dtseg.plugins"):
        registry = load_registry(plugins_dir=tmp_path / "plugs")
    assert "good" in registry.providers
    assert f"file {tmp_path / 'plugs' / 'bad.py'} failed to load: SyntaxError" in caplog.text
    assert "dtseg_user_plugins.bad" not in sys.modules
    with pytest.raises(PluginError, match=r"bad\.py failed to load: SyntaxError"):
        load_registry(plugins_dir=tmp_path / "plugs", strict=True)


def test_a_missing_plugins_dir_is_an_error(tmp_path: Path):
    with pytest.raises(PluginError, match="not a folder"):
        load_registry(plugins_dir=tmp_path / "nope")


def test_dotted_module_paths_are_imported(site: Path):
    write(site / "dotted_pkg" / "__init__.py", "")
    write(site / "dotted_pkg" / "prompts.py", PROVIDER.format(cls="Dotted", name="dotted"))
    info = load_registry(modules=["dotted_pkg.prompts"]).provider("dotted")
    assert info.source == "module dotted_pkg.prompts"


def test_a_module_reached_twice_registers_once():
    registry = load_registry(modules=["dtseg_plugins.zones"])  # also an entry point
    assert registry.provider("zones").source.startswith("built-in, entry point zones")


def test_a_missing_dotted_module_warns_with_its_name(caplog):
    with caplog.at_level(logging.WARNING, logger="dtseg.plugins"):
        registry = load_registry(modules=["no_such_pkg.prompts"])
    assert "module no_such_pkg.prompts failed to load: ModuleNotFoundError" in caplog.text
    assert registry.failures and "yolo" in registry.providers


def test_two_providers_with_one_name_is_an_error_naming_both(tmp_path: Path):
    path = write(tmp_path / "plugs" / "mine.py", PROVIDER.format(cls="MyYolo", name="yolo"))
    with pytest.raises(PluginError) as info:
        load_registry(plugins_dir=tmp_path / "plugs")
    message = str(info.value)
    assert "two prompt providers are named 'yolo'" in message
    assert "YoloPrompts from built-in, entry point yolo" in message and f"MyYolo from file {path}" in message


def test_a_misspelled_hook_fails_loudly(tmp_path: Path):
    write(tmp_path / "plugs" / "typo.py", """
        from dtseg.hookspecs import hookimpl

        @hookimpl
        def dtseg_register_prompt_provider(register):
            pass
    """)
    with pytest.raises(PluginError, match=r"typo\.py.*dtseg_register_prompt_provider.*dtseg_register_prompt_providers"):
        get_plugin_manager(plugins_dir=tmp_path / "plugs")


def test_an_in_process_plugin_object_registers_like_llm_tests_do():
    class Shout:
        class Config(StrictModel):
            text: str = "hi"

        def __init__(self, config):
            self.text = config.text

        def __call__(self, frame, prompts):
            return Prompts.empty()

    class Plugin:
        @hookimpl
        def dtseg_register_prompt_providers(self, register):
            register("shout", Shout)

    pm = get_plugin_manager()
    register_plugin(pm, Plugin(), name="test-shout")
    info = Registry.collect(pm).provider("shout")
    assert info.source == "in-process" and info.cls is Shout
    assert info.config_model.model_fields["text"].default == "hi"


@pytest.mark.parametrize("cls_body, message", [
    ("class Config:\n        pass", "Config must subclass dtseg.config.StrictModel"),
    ("pass", r"has no __call__\(\)"),
])
def test_bad_provider_classes_are_rejected_with_the_source(cls_body: str, message: str):
    namespace: dict = {}
    exec(f"class Bad:\n    {cls_body}\n", namespace)

    class Plugin:
        @hookimpl
        def dtseg_register_prompt_providers(self, register):
            register("bad", namespace["Bad"])

    pm = get_plugin_manager()
    register_plugin(pm, Plugin(), name="bad-plugin", source="in-process test")
    with pytest.raises(PluginError, match=f"in-process test: prompt provider 'bad'.*{message}"):
        Registry.collect(pm)


def test_a_hook_that_raises_is_an_error_naming_the_plugin_and_hook():
    class Plugin:
        @hookimpl
        def dtseg_register_sinks(self, register):
            raise KeyError("oops")

    pm = get_plugin_manager()
    register_plugin(pm, Plugin(), name="raising-plugin", source="in-process test")
    with pytest.raises(PluginError, match=r"^in-process test: dtseg_register_sinks raised KeyError: 'oops'$"):
        Registry.collect(pm)


def test_unknown_names_list_what_is_available():
    registry = load_registry()
    with pytest.raises(PluginError,
                       match=r"unknown prompt provider 'yollo'; available: everything, points, text, yolo, zones"):
        registry.provider("yollo")
    with pytest.raises(PluginError, match=r"unknown sink 'jsn'"):
        registry.sink("jsn")


def test_dtsegs_model_families_register_through_the_hook():
    registry = load_registry()
    assert {name: f.source for name, f in registry.families.items()} == {
        "sam": "built-in (dtseg.families.sam)", "mobile_sam": "built-in (dtseg.families.mobile_sam)",
        "sam2.1": "built-in (dtseg.families.sam2)", "sam3": "built-in (dtseg.families.sam3)"}
    assert registry.model("vit_b").cls is SamModel and registry.model("tiny").official is None
    assert registry.family("sam2.1").capabilities.video_memory and not registry.family("sam").capabilities.video_memory
    names = list(registry.models)  # official models first, then the test-size ones
    assert names.index("sam2.1_l") < names.index("tiny")
    assert names[-4:] == ["tiny", "tiny_mobile_sam", "tiny_sam2.1", "tiny_sam3"]
    with pytest.raises(PluginError, match=r"unknown model family 'sam9'; available: mobile_sam, sam, sam2.1, sam3"):
        registry.family("sam9")


def _family_class(**attributes):
    return type("Odd", (SamModel,), {"family": "odd", "models": (), "test_models": {}, **attributes})


@pytest.mark.parametrize("make, message", [
    (lambda: dict, r"expected a subclass of dtseg.families.LoadedModel"),
    (lambda: _family_class(family="sam_like"), r"Odd.family is 'sam_like', not the name it is registered under"),
    (lambda: _family_class(capabilities={"points"}), r"capabilities must be a dtseg.families.Capabilities"),
    (lambda: _family_class(models=SamModel.models),
     r"Odd.models must hold OfficialModel rows of family 'odd', got 'vit_h' of family 'sam'"),
    (lambda: _family_class(test_models={"vit_b": None}),
     r"two models are named 'vit_b': one of family 'sam' \(built-in \(dtseg.families.sam\)\) and one of 'odd'"),
    (lambda: _family_class(test_models={"odd model": None}), r"model name 'odd model' must be a word"),
])
def test_bad_model_families_are_rejected_with_the_source(make, message: str):
    cls = make()

    class Plugin:
        @hookimpl
        def dtseg_register_model_families(self, register):
            register("odd", cls)

    pm = get_plugin_manager()
    register_plugin(pm, Plugin(), name="odd-plugin", source="in-process test")
    with pytest.raises(PluginError, match=message):
        Registry.collect(pm)
