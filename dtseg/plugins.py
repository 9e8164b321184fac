"""Plugin discovery (pluggy) and the registry of prompt providers and sinks.

``get_plugin_manager`` builds a fresh manager each call (nothing happens at import time), in
this order: hookspecs, built-ins, the ``dtseg`` entry-point group (one at a time), a plugins
folder, dotted module paths; then ``check_pending`` so a misspelled hook fails loudly.
``Registry.collect(pm)`` asks every plugin for its classes and remembers where each came from.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

import pluggy

from dtseg import hookspecs
from dtseg.config import StrictModel
from dtseg.errors import DtsegError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dtseg"
USER_PLUGINS_PACKAGE = "dtseg_user_plugins"
BUILTIN_MODULES = ("dtseg.sinks",)  # optional: skipped while absent
Kind = Literal["prompt provider", "sink"]


class PluginError(DtsegError):
    """A plugin that cannot be loaded (with ``strict``), registers badly, or clashes with another."""


@dataclass(frozen=True)
class PluginInfo:
    """One registered class: ``source`` says where it came from, for humans."""

    name: str
    cls: type
    kind: Kind
    source: str

    @property
    def config_model(self) -> type[StrictModel]:
        return self.cls.Config


def get_plugin_manager(
    plugins_dir: str | Path | None = None,
    modules: Iterable[str] = (),
    strict: bool = False,
) -> pluggy.PluginManager:
    """A plugin manager with every plugin found. A plugin that fails to import is logged with
    its name and error and skipped (``strict=True``: ``PluginError``). The failures are kept in
    ``pm.dtseg_failures`` and each plugin's origin in ``pm.dtseg_sources`` (plugin name -> text)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.dtseg_sources = {}  # type: ignore[attr-defined]
    pm.dtseg_failures = []  # type: ignore[attr-defined]
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


def register_plugin(pm: pluggy.PluginManager, plugin: Any, name: str, source: str = "in-process") -> None:
    """Register a plugin object (a module or any object with ``@hookimpl`` methods) by hand."""
    pm.register(plugin, name=name)
    pm.dtseg_sources[name] = source  # type: ignore[attr-defined]


@dataclass
class Registry:
    """Every prompt provider and sink, by name, with its origin."""

    providers: dict[str, PluginInfo] = field(default_factory=dict)
    sinks: dict[str, PluginInfo] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, error)

    @classmethod
    def collect(cls, pm: pluggy.PluginManager) -> "Registry":
        """Call both hooks, plugin by plugin (so each class's origin is known). Two classes under
        one name raise ``PluginError`` naming both sources."""
        registry = cls(failures=list(getattr(pm, "dtseg_failures", [])))
        sources: dict[str, str] = getattr(pm, "dtseg_sources", {})
        hooks: dict[str, tuple[Kind, dict[str, PluginInfo]]] = {
            "dtseg_register_prompt_providers": ("prompt provider", registry.providers),
            "dtseg_register_sinks": ("sink", registry.sinks),
        }
        for hook_name, (kind, table) in hooks.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():  # in registration order
                source = sources.get(impl.plugin_name, impl.plugin_name)

                def register(name: str, plugin_cls: type, *, _k: Kind = kind, _t: dict = table,
                             _s: str = source) -> None:
                    _add(_t, PluginInfo(name, plugin_cls, _k, _s))

                try:
                    impl.function(**{arg: register for arg in impl.argnames})
                except PluginError:
                    raise
                except Exception as exc:  # noqa: BLE001 - report which plugin broke
                    raise PluginError(f"{source}: {hook_name} raised {type(exc).__name__}: {exc}") from exc
        return registry

    def provider(self, name: str) -> PluginInfo:
        return _lookup(self.providers, name, "prompt provider")

    def sink(self, name: str) -> PluginInfo:
        return _lookup(self.sinks, name, "sink")


def load_registry(plugins_dir: str | Path | None = None, modules: Iterable[str] = (),
                  strict: bool = False) -> Registry:
    """``Registry.collect(get_plugin_manager(...))``."""
    return Registry.collect(get_plugin_manager(plugins_dir, modules, strict))


# -- registration checks -------------------------------------------------------------------
def _add(table: dict[str, PluginInfo], info: PluginInfo) -> None:
    if not isinstance(info.name, str) or not re.fullmatch(r"[A-Za-z_][\w\-+.]*", info.name):
        raise PluginError(f"{info.source}: register({info.name!r}, ...): a {info.kind} name must be a "
                          "word such as 'my_detector'")
    if not isinstance(info.cls, type):
        raise PluginError(f"{info.source}: register({info.name!r}, {info.cls!r}): expected a class")
    if not hasattr(info.cls, "Config"):  # no options: an empty, strict Config
        info.cls.Config = type("Config", (StrictModel,), {"__module__": info.cls.__module__})
    if not (isinstance(info.cls.Config, type) and issubclass(info.cls.Config, StrictModel)):
        raise PluginError(f"{info.source}: {info.kind} {info.name!r}: {info.cls.__name__}.Config must "
                          "subclass dtseg.config.StrictModel (a pydantic model that rejects unknown keys)")
    method = "__call__" if info.kind == "prompt provider" else "write"
    if not any(callable(vars(k).get(method)) for k in info.cls.__mro__[:-1]):  # not type.__call__
        raise PluginError(f"{info.source}: {info.kind} {info.name!r}: {info.cls.__name__} has no {method}()")
    other = table.get(info.name)
    if other is not None:
        raise PluginError(f"two {info.kind}s are named {info.name!r}: {other.cls.__qualname__} from "
                          f"{other.source} and {info.cls.__qualname__} from {info.source}; rename one of them")
    table[info.name] = info


def _lookup(table: dict[str, PluginInfo], name: str, kind: str) -> PluginInfo:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise PluginError(f"unknown {kind} {name!r}; available: {known} (see `dtseg plugins`)") from None


# -- loading -------------------------------------------------------------------------------
def _load(pm: pluggy.PluginManager, name: str, source: str, loader: Any, strict: bool) -> None:
    """Import one plugin and register it; failures are reported and skipped (or fatal if strict)."""
    try:
        plugin = loader()
        if plugin is None:  # an optional built-in that is not there
            return
        if pm.is_registered(plugin):  # the same module reached twice (entry point and dotted path)
            log.debug("plugin %s is already registered as %s", source, pm.get_name(plugin))
            return
        pm.register(plugin, name=name)
    except Exception as exc:  # noqa: BLE001 - a plugin may raise anything while importing
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
