"""``dtseg labelstudio-config``: a Label Studio label config for a pipeline's classes.

The config has an ``Image``, a ``BrushLabels`` (or ``PolygonLabels``) tag that dtseg's masks go
into, and smart ``KeyPointLabels`` / ``RectangleLabels`` tags for interactive clicks and boxes,
each with the pipeline's class names as labels (``--labels`` to give them yourself).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dtseg.cli.common import add_pipeline_options, fail, overrides
from dtseg.errors import DtsegError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "labelstudio-config", help="print a Label Studio label config for a pipeline's classes",
        description="Print a Label Studio label config that works with dtseg serve's /labelstudio backend: the "
                    "pipeline's classes (its detector's, or its points/zones names) as labels of a BrushLabels tag "
                    "and of smart KeyPointLabels and RectangleLabels tags. Paste it into the project's "
                    "Settings -> Labeling Interface -> Code.")
    add_pipeline_options(parser)
    parser.add_argument("--labels", nargs="+", metavar="LABEL", help="these labels instead of the pipeline's classes")
    parser.add_argument("--polygon", action="store_true", help="PolygonLabels instead of BrushLabels")
    parser.add_argument("--image-key", default="image", metavar="KEY",
                        help="the task data key holding the image URL (default: image)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dtseg.labelstudio.label_config import label_config_xml

    try:
        labels = args.labels or pipeline_classes(args)
        if not labels:
            return fail(DtsegError("the pipeline names no classes: give them with --labels"))
        xml = label_config_xml(labels, "PolygonLabels" if args.polygon else "BrushLabels", args.image_key)
    except (DtsegError, ValueError, OSError, ImportError) as exc:
        return fail(exc)
    sys.stdout.write(xml)
    return 0


def pipeline_classes(args: argparse.Namespace) -> list[str]:
    """The class names the pipeline's objects can have, in order: a detector's (``names``, kept
    ones only), else, from the first stage, the ``points`` objects' class names or the zone names.
    Only the prompt stages are built (no SAM model is loaded)."""
    from dtseg.pipeline import build_stage, load_pipeline_config
    from dtseg.plugins import Registry, get_plugin_manager

    loaded = load_pipeline_config(args.config if args.config is not None else {}, overrides(args), device=args.device)
    config = loaded.config
    registry = Registry.collect(get_plugin_manager(args.plugins_dir or config.plugins_dir, config.plugins, args.strict))
    providers = [build_stage(registry, entry, i, loaded, args.device, args.allow_random).provider
                 for i, entry in enumerate(config.prompts)]
    for provider in providers:
        names = getattr(provider, "names", None)
        if isinstance(names, dict):  # a detector: {class id: name}, filtered by its classes option
            ids = getattr(provider, "class_ids", None)
            return [names[i] for i in (ids if ids is not None else sorted(names))]
    first: Any = providers[0]
    fixed = getattr(first, "prompts", None)  # the points stage: the same named objects on every image
    names = getattr(fixed, "data", {}).get("class_name") if fixed is not None else getattr(first, "names", None)
    return list(dict.fromkeys(str(n) for n in names)) if names is not None else []
