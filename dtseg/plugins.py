"""Plugin discovery (pluggy) and the registry of prompt providers, sinks and model families.

``get_plugin_manager`` builds a fresh manager each call (nothing happens at import time), in
this order: hookspecs, built-ins, the ``dtseg`` entry-point group (one at a time), a plugins
folder, dotted module paths; then ``check_pending`` so a misspelled hook fails loudly.
``Registry.collect(pm)`` asks every plugin for its classes and remembers where each came from
(``call_register_hook``, which the server's route families use too).
``default_registry()`` is the built-ins and installed plugins, collected once on first use: where
model names are looked up (``dtseg.families.resolve_model``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import re
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import pluggy

from dtseg import hookspecs
from dtseg.config import StrictModel
from dtseg.errors import DtsegError

if TYPE_CHECKING:
    from dtseg.families.base import Capabilities, LoadedModel, OfficialModel

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dtseg"
USER_PLUGINS_PACKAGE = "dtseg_user_plugins"
#: optional: skipped while absent
BUILTIN_MODULES = ("dtseg.sinks", "dtseg.families.sam", "dtseg.families.mobile_sam", "dtseg.families.sam2",
                   "dtseg.families.sam3")
Kind = Literal["prompt provider", "sink"]
NAME = re.compile(r"[A-Za-z_][\w\-+.]*")  # a plugin, family or model name


class PluginError(DtsegError):
    """A plugin that cannot be loaded (with ``strict``), registers badly, or clashes with another."""


@dataclass(frozen=True)
class PluginInfo:
    """One registered class, its options model (``cls.Config``) and, in ``source``, where it came
    from, for humans."""

    name: str
    cls: type
    kind: Kind
    source: str
    config_model: type[StrictModel]


@dataclass(frozen=True)
class ModelFamily:
    """A registered model family: ``cls`` (a ``dtseg.families.LoadedModel`` subclass) loads and
    runs its models and declares the rest; ``source`` says where it came from, for humans."""

    name: str
    cls: type[LoadedModel]
    source: str

    @property
    def capabilities(self) -> Capabilities:
        return self.cls.capabilities

    def known_models(self) -> list[KnownModel]:
        """Its official models, then its test-size ones."""
        official = [KnownModel(self.cls, row.arch, row, row.name) for row in self.cls.models]
        return official + [KnownModel(self.cls, arch, None, name) for name, arch in self.cls.test_models.items()]


class KnownModel(NamedTuple):
    """A model by name: its family's class, its architecture, its official checkpoint row
    (``None``: a test-size model, random weights only, or a custom architecture) and its name."""

    cls: type[LoadedModel]
    arch: Any
    official: OfficialModel | None
    name: str


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with dtseg's hooks, each plugin's origin (``dtseg_sources``: plugin
    name -> text) and the plugins that failed to load (``dtseg_failures``: (source, error))."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.dtseg_sources: dict[str, str] = {}
        self.dtseg_failures: list[tuple[str, str]] = []


def get_plugin_manager(
    plugins_dir: str | Path | None = None,
    modules: Iterable[str] = (),
    strict: bool = False,
) -> PluginManager:
    """A plugin manager with every plugin found. A plugin that fails to import is logged with
    its name and error and skipped (``strict=True``: ``PluginError``); see ``PluginManager``."""
    pm = PluginManager()
    for name in BUILTIN_MODULES:
        _load(pm, name, f"built-in ({name})", lambda n=name: _import_optional(n), strict)
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        _load(pm, f"entrypoint:{ep.name}", _entry_point_source(ep), ep.load, strict)
    if plugins_dir is not None:
        for path in _plugin_files(Path(plugins_dir)):
            _load(pm, f"file:{path}", f"file {path}", lambda p=path: _import_file(p), strict)
    for module in modules:
        _load(pm, f"module:{module}", f"module {module}", lambda m=module: importlib.import_module(m), strict)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        source = pm.dtseg_sources.get(name, name)
        raise PluginError(f"{source}: {exc} — is the hook name spelled right? dtseg's hooks are "
                          f"{', '.join(_hook_names())}") from None
    return pm


def register_plugin(pm: PluginManager, plugin: Any, name: str, source: str = "in-process") -> None:
    """Register a plugin object (a module or any object with ``@hookimpl`` methods) by hand."""
    pm.register(plugin, name=name)
    pm.dtseg_sources[name] = source


@dataclass
class Registry:
    """Every prompt provider, sink and model family, by name, with its origin; and every model
    of those families by name (official models first, in family order, then test-size ones)."""

    providers: dict[str, PluginInfo] = field(default_factory=dict)
    sinks: dict[str, PluginInfo] = field(default_factory=dict)
    families: dict[str, ModelFamily] = field(default_factory=dict)
    models: dict[str, KnownModel] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, error)

    @classmethod
    def collect(cls, pm: pluggy.PluginManager) -> Registry:
        """Call every hook, plugin by plugin (so each class's origin is known). Two classes (or
        two models) under one name raise ``PluginError`` naming both sources."""
        registry = cls(failures=list(getattr(pm, "dtseg_failures", [])))
        hooks: dict[str, Callable[[object, object, str], None]] = {
            "dtseg_register_prompt_providers": lambda n, c, s: _add(registry.providers, n, c, "prompt provider", s),
            "dtseg_register_sinks": lambda n, c, s: _add(registry.sinks, n, c, "sink", s),
            "dtseg_register_model_families": lambda n, c, s: _add_family(registry, n, c, s),
        }
        for hook_name, add in hooks.items():
            call_register_hook(pm, hook_name, add)
        registry.models = dict(sorted(registry.models.items(), key=lambda item: item[1].official is None))
        return registry

    def provider(self, name: str) -> PluginInfo:
        return _lookup(self.providers, name, "prompt provider")

    def sink(self, name: str) -> PluginInfo:
        return _lookup(self.sinks, name, "sink")

    def family(self, name: str) -> ModelFamily:
        return _lookup(self.families, name, "model family")

    def model(self, name: str) -> KnownModel:
        """The model called ``name``; ``ValueError`` listing the known names if there is none."""
        try:
            return self.models[name]
        except KeyError:
            raise ValueError(f"unknown model {name!r}; known models: {', '.join(self.models)}") from None


def call_register_hook(pm: pluggy.PluginManager, hook_name: str, add: Callable[[object, object, str], None],
                       first: str | None = None) -> None:
    """Call every implementation of the hook ``hook_name`` (in registration order; the plugin
    named ``first`` before the rest) with a ``register(name, obj)`` function that calls
    ``add(name, obj, source)``, ``source`` saying where that plugin came from. A ``PluginError``
    passes through; any other exception becomes a ``PluginError`` naming the plugin and the hook."""
    sources: dict[str, str] = getattr(pm, "dtseg_sources", {})
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    if first is not None:
        impls.sort(key=lambda impl: impl.plugin_name != first)  # stable: the rest keep their order
    for impl in impls:
        source = sources.get(impl.plugin_name, impl.plugin_name)

        def register(name: object, obj: object, *, _source: str = source) -> None:
            add(name, obj, _source)

        try:
            impl.function(**dict.fromkeys(impl.argnames, register))
        except PluginError:
            raise
        except Exception as exc:  # report which plugin broke
            raise PluginError(f"{source}: {hook_name} raised {type(exc).__name__}: {exc}") from exc


def load_registry(plugins_dir: str | Path | None = None, modules: Iterable[str] = (),
                  strict: bool = False) -> Registry:
    """``Registry.collect(get_plugin_manager(...))``."""
    return Registry.collect(get_plugin_manager(plugins_dir, modules, strict))


@functools.cache
def default_registry() -> Registry:
    """The built-ins and the installed plugins (entry points), collected on first use and kept:
    the model families ``SamEngine.load``, config validation and ``dtseg models`` know.
    ``default_registry.cache_clear()`` collects again on the next call (e.g. after installing a
    plugin in a running process)."""
    return load_registry()


# -- registration checks -------------------------------------------------------------------
def _add(table: dict[str, PluginInfo], name: object, cls: object, kind: Kind, source: str) -> None:
    """Check what a plugin passed to ``register(name, cls)``, then add it as a ``PluginInfo``."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise PluginError(f"{source}: register({name!r}, ...): a {kind} name must be a word such as 'my_detector'")
    if not isinstance(cls, type):
        raise PluginError(f"{source}: register({name!r}, {cls!r}): expected a class")
    if not hasattr(cls, "Config"):  # no options: an empty, strict Config
        setattr(cls, "Config", type("Config", (StrictModel,), {"__module__": cls.__module__}))  # noqa: B010 - on any class
    config = getattr(cls, "Config")  # noqa: B009 - any class may be registered; checked next
    if not (isinstance(config, type) and issubclass(config, StrictModel)):
        raise PluginError(f"{source}: {kind} {name!r}: {cls.__name__}.Config must "
                          "subclass dtseg.config.StrictModel (a pydantic model that rejects unknown keys)")
    method = "__call__" if kind == "prompt provider" else "write"
    if not any(callable(vars(k).get(method)) for k in cls.__mro__[:-1]):  # not type.__call__
        raise PluginError(f"{source}: {kind} {name!r}: {cls.__name__} has no {method}()")
    info = PluginInfo(name, cls, kind, source, config)
    other = table.get(info.name)
    if other is not None:
        raise PluginError(f"two {info.kind}s are named {info.name!r}: {other.cls.__qualname__} from "
                          f"{other.source} and {info.cls.__qualname__} from {info.source}; rename one of them")
    table[info.name] = info


def _add_family(registry: Registry, name: object, cls: object, source: str) -> None:
    """Check what a plugin passed to ``register(name, cls)`` and what the family class declares,
    then add it and its models."""
    import inspect

    from dtseg.families.base import Capabilities, LoadedModel, OfficialModel

    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise PluginError(f"{source}: register({name!r}, ...): a model family name must be a word such as 'my_sam'")
    where = f"{source}: model family {name!r}"
    if not (isinstance(cls, type) and issubclass(cls, LoadedModel)) or inspect.isabstract(cls):
        raise PluginError(f"{where}: expected a subclass of dtseg.families.LoadedModel with every abstract "
                          f"method defined, got {cls!r}")
    family = ModelFamily(name, cls, source)
    if getattr(cls, "family", None) != family.name:
        raise PluginError(f"{where}: {cls.__name__}.family is {getattr(cls, 'family', None)!r}, not the name it "
                          "is registered under")
    capabilities: object = cls.capabilities  # as the plugin wrote it
    if not isinstance(capabilities, Capabilities):
        raise PluginError(f"{where}: {cls.__name__}.capabilities must be a dtseg.families.Capabilities")
    rows: list[object] = list(cls.models)
    for row in rows:
        if not isinstance(row, OfficialModel) or row.family != family.name:
            got = f"{row.name!r} of family {row.family!r}" if isinstance(row, OfficialModel) else repr(row)
            raise PluginError(f"{where}: {cls.__name__}.models must hold OfficialModel rows of family "
                              f"{family.name!r}, got {got}")
    other = registry.families.get(family.name)
    if other is not None:
        raise PluginError(f"two model families are named {family.name!r}: {other.cls.__qualname__} from "
                          f"{other.source} and {cls.__qualname__} from {family.source}; rename one of them")
    models = family.known_models()
    for model in models:
        model_name: object = model.name  # a test_models key may be anything
        if not isinstance(model_name, str) or not NAME.fullmatch(model_name):
            raise PluginError(f"{where}: model name {model.name!r} must be a word such as 'my_sam_b'")
        clash = registry.models.get(model.name)
        if clash is not None:
            raise PluginError(f"two models are named {model.name!r}: one of family {clash.cls.family!r} "
                              f"({registry.families[clash.cls.family].source}) and one of {family.name!r} "
                              f"({family.source}); rename one of them")
    if len({m.name for m in models}) != len(models):
        raise PluginError(f"{where}: {cls.__name__} declares a model name twice")
    registry.families[family.name] = family
    registry.models.update((m.name, m) for m in models)


def _lookup(table: dict[str, Any], name: str, kind: str) -> Any:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise PluginError(f"unknown {kind} {name!r}; available: {known} (see `dtseg plugins`)") from None


# -- loading -------------------------------------------------------------------------------
def _load(pm: PluginManager, name: str, source: str, loader: Any, strict: bool) -> None:
    """Import one plugin and register it; failures are reported and skipped (or fatal if strict)."""
    try:
        plugin = loader()
        if plugin is None:  # an optional built-in that is not there
            return
        if pm.is_registered(plugin):  # the same module reached twice (entry point and dotted path)
            log.debug("plugin %s is already registered as %s", source, pm.get_name(plugin))
            return
        pm.register(plugin, name=name)
    except Exception as exc:  # a plugin may raise anything while importing
        message = f"plugin {source} failed to load: {type(exc).__name__}: {exc}"
        if strict:
            raise PluginError(message + " (--strict)") from exc
        log.warning("%s — skipped", message)
        pm.dtseg_failures.append((source, f"{type(exc).__name__}: {exc}"))
        return
    pm.dtseg_sources[name] = source


def _import_optional(module: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


def _entry_point_source(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
    prefix = "built-in, " if dist is not None and dist.name == "dtseg" else ""
    return f"{prefix}entry point {ep.name} = {ep.value} ({where})"


def _plugin_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise PluginError(f"plugins_dir {folder}: not a folder")
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def _import_file(path: Path) -> types.ModuleType:
    """Import ``path`` as ``dtseg_user_plugins.<stem>`` (a fresh module each time)."""
    if USER_PLUGINS_PACKAGE not in sys.modules:
        package = types.ModuleType(USER_PLUGINS_PACKAGE)
        package.__path__ = []
        sys.modules[USER_PLUGINS_PACKAGE] = package
    name = USER_PLUGINS_PACKAGE + "." + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("dtseg_"))
