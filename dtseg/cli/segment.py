"""``dtseg segment SOURCE... --out DIR``: run the pipeline on images, write each as it finishes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dtseg.cli.common import add_pipeline_options, build_pipeline, fail
from dtseg.errors import DtsegError
from dtseg.runner import expand_sources, run_items


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment images (files, folders, globs, URLs)",
        description="Run the prompt stages and SAM on each image; write the config's sinks to --out.")
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="an image, a folder, a glob or an http(s) URL")
    parser.add_argument("-o", "--out", default="out", metavar="DIR", help="output folder (default: out)")
    add_pipeline_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The loop is ``dtseg.runner.run_items``, which ``Pipeline.run`` uses too."""
    items, missing = expand_sources(args.sources)
    try:
        pipeline = build_pipeline(args)
        sinks = pipeline.open_sinks(args.out)
    except (DtsegError, ValueError, OSError) as exc:
        return fail(exc)
    summary = run_items(pipeline, items, sinks, args.out, missing=missing)
    print(summary.report(), file=sys.stderr)
    if summary.interrupted:
        return 130
    return 1 if summary.failed or not items else 0
