"""Options shared by the commands that run a pipeline (segment, video, serve), and the helper
that builds a ``Pipeline`` from them."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from dtseg.errors import DtsegError

log = logging.getLogger("dtseg")


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """``--config --set --sam-checkpoint --device --plugins-dir --strict --allow-random``."""
    group = parser.add_argument_group("pipeline")
    group.add_argument("-c", "--config", metavar="FILE",
                       help="pipeline YAML (default: built-in defaults = yolo boxes -> SAM vit_b -> "
                            "annotated PNG + JSON, like configs/default.yaml)")
    group.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. sam.model=vit_h or prompts.yolo.conf=0.4 "
                            "(value parsed as YAML; repeatable)")
    group.add_argument("--sam-checkpoint", metavar="PATH", help="SAM weights file (sets sam.checkpoint)")
    group.add_argument("--device", help="cpu, cuda, cuda:1, mps (sets sam.device and the stages' device)")
    group.add_argument("--plugins-dir", metavar="DIR", help="load every *.py in DIR as a plugin")
    group.add_argument("--cache-dir", metavar="DIR",
                       help="keep embeddings in DIR across runs: a re-run pays no encoder pass (sets cache.dir)")
    group.add_argument("--strict", action="store_true", help="a plugin that fails to load is an error")
    group.add_argument("--allow-random", action="store_true",
                       help="where weights are missing, use RANDOM weights instead of failing (demos "
                            "only: the output is labelled and meaningless)")


def overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` values plus the shortcuts (``--sam-checkpoint``)."""
    items = list(args.overrides)
    if args.sam_checkpoint:
        items.append(f"sam.checkpoint={_yaml_string(args.sam_checkpoint)}")
    if getattr(args, "cache_dir", None):  # relative to the current folder, like every command-line path
        items.append(f"cache.dir={_yaml_string(str(Path(args.cache_dir).resolve()))}")
    return items


def build_pipeline(args: argparse.Namespace) -> Any:
    """A ``Pipeline`` from the options of ``add_pipeline_options``. Raises ``DtsegError``."""
    from dtseg.pipeline import Pipeline

    config: Any = args.config if args.config is not None else {}
    return Pipeline.from_config(config, overrides(args), plugins_dir=args.plugins_dir, strict=args.strict,
                                device=args.device, allow_random=args.allow_random)


def fail(error: BaseException, code: int = 2) -> int:
    """Print a setup error (config, plugin, weights) the way a user wants to read it."""
    message = str(error) if isinstance(error, (DtsegError, ValueError, OSError)) else f"{type(error).__name__}: {error}"
    print(f"dtseg: error: {message}", file=sys.stderr)
    return code


def _yaml_string(value: str) -> str:
    """Quote ``value`` so that ``--set`` (which parses YAML) keeps it a string."""
    return "'" + value.replace("'", "''") + "'"
