"""``dtseg plugins``: every prompt provider and sink, where it came from, and its config fields; every
model family, where it came from, and its models."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from dtseg.cli.common import fail
from dtseg.errors import DtsegError
from dtseg.plugins import PluginInfo, Registry, get_plugin_manager


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("plugins", help="list prompt providers, sinks and model families",
                                   description="List every prompt provider and sink, its origin and its options; "
                                               "every model family, its origin and its models.")
    parser.add_argument("-c", "--config", metavar="FILE", help="also load the plugins this config names")
    parser.add_argument("--plugins-dir", metavar="DIR", help="load every *.py in DIR as a plugin")
    parser.add_argument("--strict", action="store_true", help="a plugin that fails to load is an error")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        modules, plugins_dir = _from_config(args.config)
        registry = Registry.collect(get_plugin_manager(args.plugins_dir or plugins_dir, modules, args.strict))
    except (DtsegError, ValueError, OSError) as exc:
        return fail(exc)
    if args.json:
        print(json.dumps(describe(registry), indent=2))
    else:
        print(render(registry))
    return 1 if registry.failures and args.strict else 0


def describe(registry: Registry) -> dict[str, Any]:
    """The registry as plain data."""
    def entry(info: PluginInfo) -> dict[str, Any]:
        return {"name": info.name, "class": f"{info.cls.__module__}.{info.cls.__qualname__}",
                "source": info.source, "config": [field_row(n, f) for n, f in info.config_model.model_fields.items()]}

    return {"prompt_providers": [entry(i) for i in registry.providers.values()],
            "sinks": [entry(i) for i in registry.sinks.values()],
            "model_families": [{"name": f.name, "class": f"{f.cls.__module__}.{f.cls.__qualname__}", "source": f.source,
                                "models": [m.name for m in f.known_models()]} for f in registry.families.values()],
            "failed": [{"source": s, "error": e} for s, e in registry.failures]}


def render(registry: Registry) -> str:
    data = describe(registry)
    lines: list[str] = []
    for title, key in (("Prompt providers", "prompt_providers"), ("Sinks", "sinks")):
        lines.append(f"{title}:")
        for item in data[key] or [{"name": "(none)", "source": "", "config": []}]:
            lines.append(f"  {item['name']}  [{item['source']}]")
            for row in item["config"]:
                default = "" if row["required"] else f" = {row['default']!r}"
                help_ = f"  # {row['description']}" if row["description"] else ""
                lines.append(f"      {row['name']}: {row['type']}{default}{help_}")
        lines.append("")
    lines.append("Model families:")
    for family in data["model_families"] or [{"name": "(none)", "source": "", "models": []}]:
        lines.append(f"  {family['name']}  [{family['source']}]")
        if family["models"]:
            lines.append(f"      models: {', '.join(family['models'])}")
    lines.append("")
    for failure in data["failed"]:
        lines.append(f"failed to load: {failure['source']}: {failure['error']}")
    return "\n".join(lines).rstrip()


def field_row(name: str, field: FieldInfo) -> dict[str, Any]:
    required = field.is_required()
    default: Any = None
    if not required:
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        default = None if default is PydanticUndefined else _plain(default)
    return {"name": name, "type": type_name(field.annotation), "required": required, "default": default,
            "description": field.description or ""}


def type_name(annotation: Any) -> str:
    """``list[int | str] | None`` rather than ``typing.Optional[typing.List[...]]``."""
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    text = str(annotation).replace("typing.", "").replace("NoneType", "None")
    return re.sub(r"(?:[\w]+\.)+(\w+)", r"\1", text)  # drop module paths


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _from_config(path: str | None) -> tuple[list[str], str | None]:
    """The ``plugins`` and ``plugins_dir`` of a pipeline config (other keys are not validated here)."""
    if path is None:
        return [], None
    from dtseg.pipeline import load_pipeline_config

    loaded = load_pipeline_config(path)
    return loaded.config.plugins, loaded.config.plugins_dir
