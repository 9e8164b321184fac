"""``dtseg segment SOURCE... --out DIR``: run the pipeline on images, write each as it finishes."""

from __future__ import annotations

import argparse
import glob
import logging
import re
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from dtseg.cli.common import add_detector_shortcuts, add_pipeline_options, build_pipeline, fail
from dtseg.cli.ledger import LEDGER_NAME, Ledger, config_hash
from dtseg.errors import ConfigError, DtsegError, InputError

log = logging.getLogger("dtseg.segment")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
URL_TIMEOUT_S = 30.0
MAX_URL_BYTES = 200 << 20


@dataclass(frozen=True)
class Item:
    """One image to process: where it is and the output name (a unique file stem)."""

    source: str
    name: str


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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dtseg.sinks._common import recording_writes

    items, missing = expand_sources(args.sources, recursive=args.recursive, exclude=Path(args.out))
    try:
        pipeline = build_pipeline(args)
        ledger = Ledger(args.out, config_hash(pipeline.loaded.config if pipeline.loaded else {})).load()
        if args.skip_existing:
            check_skippable(pipeline)
        sinks = pipeline.open_sinks(args.out)
    except (DtsegError, ValueError, OSError) as exc:
        return fail(exc)
    failed: list[tuple[str, str]] = [(m, "no such file, folder or matching glob") for m in missing]
    for source, why in failed:
        print(f"error: {source}: {why}", file=sys.stderr)
    total = len(items)
    if args.skip_existing:
        items = [item for item in items if not ledger.is_done(item.name, item.source)]
    skipped = total - len(items)
    start = time.perf_counter()
    done = 0

    def failure(source: str, exc: Exception) -> None:
        log.debug("failed on %s", source, exc_info=exc)
        why = str(exc) if isinstance(exc, (DtsegError, OSError)) else f"{type(exc).__name__}: {exc}"
        failed.append((source, why))
        tqdm.write(f"error: {source}: {why}", file=sys.stderr)

    try:
        with tqdm(total=len(items), unit="image", disable=len(items) < 2, file=sys.stderr) as bar:
            for item, frame, result in segment_items(pipeline, items):
                bar.set_postfix_str(item.name, refresh=False)
                try:
                    if isinstance(result, Exception):
                        raise result
                    with recording_writes() as written:
                        for sink in sinks:
                            sink.write(item.name, frame, result)
                    ledger.record(item.name, item.source, written)
                    done += 1
                except Exception as exc:  # noqa: BLE001 - one bad image must not stop the run
                    failure(item.source, exc)
                bar.update()
    except KeyboardInterrupt:
        print(f"interrupted: {done} of {len(items)} images written to {args.out}"
              + (f" ({skipped} more were done before)" if skipped else "")
              + "; the same command with --skip-existing continues", file=sys.stderr)
        return 130
    finally:
        for sink in sinks:
            sink.close()
        ledger.close()
    _summary(done, failed, time.perf_counter() - start, args.out, pipeline.random_label, skipped)
    return 1 if failed or not total else 0


def check_skippable(pipeline: Any) -> None:
    """``--skip-existing`` needs sinks that write per image: a run-level file (``coco``) would
    leave the skipped images out."""
    for entry in pipeline.loaded.config.sinks if pipeline.loaded else []:
        name = next(iter(entry))
        if name == "coco":
            raise ConfigError("--skip-existing: the coco sink writes one file for the whole run, which would "
                              "leave the skipped images out; run without --skip-existing, or without coco")


def segment_items(pipeline: Any, items: list[Item]) -> Iterator[tuple[Item, Any, Any]]:
    """``(item, frame, result)`` for every item, in order: ``result`` is an ``sv.Detections`` or
    the ``Exception`` that item raised (``frame`` is ``None`` if it could not be read). Images go
    through ``pipeline.segment_batch`` ``pipeline.batch_size`` at a time; if a batch fails where
    each of its images alone succeeds (e.g. out of memory), the rest of the run goes one by one."""
    batch_size, first = pipeline.batch_size, 0
    while first < len(items):
        chunk, first = items[first : first + batch_size], first + batch_size
        readable: list[tuple[Item, Any]] = []
        for item in chunk:
            try:
                readable.append((item, read_image(item.source)))
            except Exception as exc:  # noqa: BLE001
                yield item, None, exc
        results, batch_failed = segment_each(pipeline, [frame for _, frame in readable])
        if batch_failed and not any(isinstance(result, Exception) for result in results):
            log.warning("a batch of %d images failed where each image alone succeeds (see --verbose): "
                        "batch_size 1 from here on", len(readable))
            batch_size = 1
        for (item, frame), result in zip(readable, results, strict=True):
            yield item, frame, result


def segment_each(pipeline: Any, frames: list[Any]) -> tuple[list[Any], bool]:
    """``pipeline.segment_batch(frames)``; if the batch fails, each frame on its own (its stages
    run again), so one bad image costs only its own result. Returns an ``sv.Detections`` or the
    ``Exception`` per frame, and whether the batch as a whole failed. Embeddings stored before
    a failure stay in the engine's cache."""
    if len(frames) > 1:
        try:
            return pipeline.segment_batch(frames), False
        except Exception:  # noqa: BLE001 - retried one by one below, which names the culprit
            log.debug("batch of %d failed; retrying one by one", len(frames), exc_info=True)
    results: list[Any] = []
    for frame in frames:
        try:
            results.append(pipeline(frame))
        except Exception as exc:  # noqa: BLE001
            results.append(exc)
    return results, len(frames) > 1


def expand_sources(sources: list[str], recursive: bool = False,
                   exclude: Path | None = None) -> tuple[list[Item], list[str]]:
    """Sources -> images in order (a folder's images sorted by name, with ``recursive`` also in its
    subfolders, except those under ``exclude``; a glob's matches sorted) with unique output names;
    and the sources that matched nothing."""
    paths: list[str] = []
    missing: list[str] = []
    for source in sources:
        if is_url(source):
            paths.append(source)
        elif Path(source).is_dir():
            paths += folder_images(Path(source), recursive, exclude)
        elif Path(source).exists():
            paths.append(source)
        elif glob.has_magic(source):
            matches = sorted(p for p in glob.glob(source, recursive=True) if Path(p).is_file())
            paths += matches
            if not matches:
                missing.append(source)
        else:
            missing.append(source)
    return unique_names(paths), missing


def folder_images(folder: Path, recursive: bool, exclude: Path | None) -> list[str]:
    """The image files of ``folder`` (and its subfolders, with ``recursive``), sorted by path;
    nothing under ``exclude`` (the output folder, whose annotated PNGs are images too)."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    skip = exclude.resolve() if exclude is not None else None
    images = []
    for path in found:
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        images.append(path)
    return [str(p) for p in sorted(images)]


def unique_names(sources: list[str]) -> list[Item]:
    """One output name per source: its file stem, with ``_2``, ``_3`` ... where stems repeat."""
    seen: dict[str, int] = {}
    items = []
    for source in sources:
        path = urllib.parse.urlparse(source).path if is_url(source) else source
        stem = re.sub(r"[^\w.\-]", "_", Path(path).stem) or "image"
        seen[stem] = seen.get(stem, 0) + 1
        items.append(Item(source, stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"))
    return items


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def read_image(source: str) -> Any:
    """A file path or http(s) URL -> RGB uint8 ``(H, W, 3)``."""
    from dtseg.io import load_image

    if not is_url(source):
        return load_image(source, "image")
    try:
        with urllib.request.urlopen(source, timeout=URL_TIMEOUT_S) as response:
            data = response.read(MAX_URL_BYTES + 1)
    except OSError as exc:
        raise InputError("image", f"cannot fetch {source}: {getattr(exc, 'reason', exc)}") from exc
    if len(data) > MAX_URL_BYTES:
        raise InputError("image", f"{source} is larger than {MAX_URL_BYTES >> 20} MiB")
    return load_image(data, "image")


def _summary(done: int, failed: list[tuple[str, str]], seconds: float, out: str, random_label: str | None,
             skipped: int = 0) -> None:
    total = done + len(failed)
    line = f"segmented {done} of {total} image{'s' * (total != 1)} in {seconds:.1f} s -> {out}"
    if skipped:
        line += f" ({skipped} skipped: done before)"
    print(line + (f"; {len(failed)} failed:" if failed else ""), file=sys.stderr)
    for source, why in failed:
        print(f"  {source}: {why}", file=sys.stderr)
    if total + skipped == 0:
        print("no images found", file=sys.stderr)
    if random_label:
        print(f"NOTE: {random_label}", file=sys.stderr)
