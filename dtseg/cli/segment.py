"""``dtseg segment``: images, folders, globs and URLs through a pipeline, outputs per image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dtseg.cli.common import add_detector_shortcuts, add_pipeline_options, add_text_shortcut, build_pipeline, fail
from dtseg.cli.ledger import LEDGER_NAME, Ledger, config_hash
from dtseg.errors import ConfigError, DtsegError

if TYPE_CHECKING:
    from dtseg.pipeline import LoadedConfig
    from dtseg.plugins import Registry


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment images (files, folders, globs, URLs)",
        description="Run the prompt stages and SAM on each image; write the config's sinks to --out.")
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="an image, a folder, a glob or an http(s) URL")
    parser.add_argument("-o", "--out", default="out", metavar="DIR", help="output folder (default: out)")
    parser.add_argument("-r", "--recursive", action="store_true",
                        help="also take the images in a folder's subfolders (the --out folder excepted)")
    parser.add_argument("--skip-existing", action="store_true",
                        help=f"skip images an earlier run into --out finished with the same config and whose "
                             f"outputs are intact (recorded in OUT/{LEDGER_NAME}): resumes a killed run")
    add_pipeline_options(parser)
    add_detector_shortcuts(parser)
    add_text_shortcut(parser)
    ray = parser.add_argument_group("ray")
    ray.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="run on Ray Data: a cluster's address (ray://host:10001, auto), or none for a local "
                          "Ray instance; the outputs are those of a local run")
    ray.add_argument("--ray-actors", type=int, metavar="N",
                     help="engines in the actor pool (default: one per GPU, else one per 4 CPUs)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The loop is ``dtseg.runner.run_items``, which ``Pipeline.run`` uses too; this adds the
    ledger of finished images (``--skip-existing``), fed by the sinks' writer."""
    from dtseg.runner import expand_sources, run_items  # supervision: not needed for --help
    from dtseg.sinks.writer import FileWriter

    items, missing = expand_sources(args.sources, recursive=args.recursive, exclude=Path(args.out))
    if args.ray is not None:
        from dtseg.cli.ray_run import run_on_ray

        if args.skip_existing:
            return fail(ConfigError("--skip-existing works on local runs only, not with --ray"))
        return run_on_ray(args, items, missing)
    try:
        pipeline = build_pipeline(args)
        ledger = Ledger(args.out, config_hash(pipeline.loaded.config if pipeline.loaded else {})).load()
        if args.skip_existing:
            check_skippable(pipeline.registry, pipeline.loaded)
        writer = FileWriter(args.out, record=True)
        sinks = pipeline.open_sinks(args.out, writer=writer)
    except (DtsegError, ValueError, OSError) as exc:
        return fail(exc)
    total = len(items)
    if args.skip_existing:
        items = [item for item in items if not ledger.is_done(item.name, item.source)]
    try:
        summary = run_items(pipeline, items, sinks, args.out, missing=missing, ledger=ledger, writer=writer,
                            skipped=total - len(items))
    finally:
        ledger.close()
    if summary.interrupted:
        print(f"interrupted: {len(summary.done)} of {len(items)} images written to {args.out}"
              + (f" ({summary.skipped} more were done before)" if summary.skipped else "")
              + "; the same command with --skip-existing continues", file=sys.stderr)
        return 130
    print(summary.report(), file=sys.stderr)
    return 1 if summary.failed or not total else 0


def check_skippable(registry: Registry, loaded: LoadedConfig | None) -> None:
    """``--skip-existing`` needs sinks that write per image: a per-run sink (one file for the
    whole run, ``coco``) would leave the skipped images out."""
    from dtseg.contracts import SinkTraits

    for entry in loaded.config.sinks if loaded else []:
        name = next(iter(entry))
        if SinkTraits.of(registry.sink(name).cls).per_run:
            raise ConfigError(f"--skip-existing: the {name} sink writes one file for the whole run, which would "
                              f"leave the skipped images out; run without --skip-existing, or without {name}")
