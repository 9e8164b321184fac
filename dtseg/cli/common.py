"""Options shared by the commands that run a pipeline (segment, video, serve), and the helper
that builds a ``Pipeline`` from them."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from dtseg.errors import CheckpointNotFoundError, ConfigError, DtsegError

log = logging.getLogger("dtseg")

ALLOW_RANDOM_HELP = ("where weights are missing, use RANDOM weights instead of failing (to try dtseg offline: "
                     "the output is labelled as such, and its masks are meaningless)")


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
    group.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"],
                       help="SAM precision (sets sam.dtype; default auto: bf16 where the device runs it "
                            "natively, else fp32)")
    group.add_argument("--plugins-dir", metavar="DIR", help="load every *.py in DIR as a plugin")
    group.add_argument("--cache-dir", metavar="DIR",
                       help="keep embeddings in DIR across runs: a re-run pays no encoder pass (sets cache.dir)")
    group.add_argument("--strict", action="store_true", help="a plugin that fails to load is an error")
    group.add_argument("--allow-random", action="store_true", help=ALLOW_RANDOM_HELP)


def add_detector_shortcuts(parser: argparse.ArgumentParser) -> None:
    """ultralytics-style ``--conf`` and ``--classes``: options of the config's ``yolo`` stage."""
    group = parser.add_argument_group("detector (the yolo stage)")
    group.add_argument("--conf", type=float, metavar="CONF",
                       help="minimum detector confidence (sets prompts.yolo.conf; with --text, prompts.text.conf)")
    group.add_argument("--classes", nargs="+", metavar="CLASS",
                       help="keep only these classes, names or ids: --classes person bus, --classes 0,5 "
                            "(sets prompts.yolo.classes)")


def add_text_shortcut(parser: argparse.ArgumentParser) -> None:
    """``--text "person, red car"``: the ``text`` stage alone (SAM 3 concept prompts)."""
    parser.add_argument("--text", metavar="PHRASES",
                        help='segment every instance of each comma-separated phrase, e.g. --text "person, red car" '
                             "(the text stage alone, one class per phrase; needs sam.model=sam3; --conf sets "
                             "its score threshold)")


def checkpoint_argument(path: str) -> str:
    """A ``--sam-checkpoint`` value: ``random`` as is, a path made absolute against the current
    directory (a path typed on the command line never means "next to the config file"). The file
    must exist: a missing explicit checkpoint is an error, never a fallback to random weights."""
    if path == "random":
        return path
    resolved = Path(path).expanduser().absolute()
    if not resolved.is_file():
        raise CheckpointNotFoundError(f"--sam-checkpoint: no such file: {path}"
                                      + (f" (looked at {resolved})" if str(resolved) != path else ""))
    return str(resolved)


def overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` values plus the shortcuts (``--sam-checkpoint``, ``--text``, ``--conf``, ``--classes``);
    ``--text`` replaces the config's prompt stages (first, so that ``--set prompts.text.KEY=...``
    sets its options)."""
    text = getattr(args, "text", None)
    items = [] if text is None else [f"prompts={json.dumps([{'text': {'phrases': phrase_list(text)}}])}"]
    items += args.overrides
    if args.sam_checkpoint:
        items.append(f"sam.checkpoint={_yaml_string(checkpoint_argument(args.sam_checkpoint))}")
    if getattr(args, "dtype", None):
        items.append(f"sam.dtype={args.dtype}")
    if getattr(args, "conf", None) is not None:
        items.append(f"prompts.{'yolo' if text is None else 'text'}.conf={args.conf}")
    if getattr(args, "classes", None):
        items.append(f"prompts.yolo.classes={json.dumps(class_list(args.classes))}")
    if getattr(args, "cache_dir", None):  # relative to the current folder, like every command-line path
        items.append(f"cache.dir={_yaml_string(str(Path(args.cache_dir).resolve()))}")
    return items


def class_list(values: list[str]) -> list[int | str]:
    """``["person", "bus"]`` / ``["0,5"]`` -> ``["person", "bus"]`` / ``[0, 5]``: ids as ints."""
    names = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return [int(v) if v.isdigit() else v for v in names]


def phrase_list(value: str) -> list[str]:
    """``"person, red car"`` -> ``["person", "red car"]`` (an empty result is the stage's error)."""
    return [p.strip() for p in value.split(",") if p.strip()]


def build_pipeline(args: argparse.Namespace) -> Any:
    """A ``Pipeline`` from the options of ``add_pipeline_options``. Raises ``DtsegError``."""
    from dtseg.pipeline import Pipeline

    config: Any = args.config if args.config is not None else {}
    try:
        pipeline = Pipeline.from_config(config, overrides(args), plugins_dir=args.plugins_dir, strict=args.strict,
                                        device=args.device, allow_random=args.allow_random,
                                        keep_heap_default=True)  # the process is dtseg's
    except ConfigError as exc:
        if "prompts.yolo." in str(exc) and "no entry named 'yolo'" in str(exc):
            raise ConfigError("--conf and --classes set options of the yolo stage, and this config has none "
                              "(use --set for other stages)") from None
        raise
    summary = getattr(pipeline.engine, "summary", None)
    if summary is not None:  # the first line: which model, device and precision (auto's choice)
        print(f"dtseg: {summary()}", file=sys.stderr, flush=True)
    return pipeline


def fail(error: BaseException, code: int = 2) -> int:
    """Print a setup error (config, plugin, weights) the way a user wants to read it."""
    if isinstance(error, CheckpointNotFoundError):  # its advice in flags, not keyword arguments
        message = error.spelled("cli")
    elif isinstance(error, (DtsegError, ValueError, OSError)):
        message = str(error)
    else:
        message = f"{type(error).__name__}: {error}"
    print(f"dtseg: error: {message}", file=sys.stderr)
    return code


def _yaml_string(value: str) -> str:
    """Quote ``value`` so that ``--set`` (which parses YAML) keeps it a string."""
    return "'" + value.replace("'", "''") + "'"
