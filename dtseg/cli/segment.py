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

from tqdm import tqdm

from dtseg.cli.common import add_pipeline_options, build_pipeline, fail
from dtseg.errors import DtsegError, InputError
from dtseg.io import load_image

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
    add_pipeline_options(parser)
    ray = parser.add_argument_group("ray")
    ray.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="run on Ray Data: a cluster's address (ray://host:10001, auto), or none for a local "
                          "Ray instance; the outputs are those of a local run")
    ray.add_argument("--ray-actors", type=int, metavar="N",
                     help="engines in the actor pool (default: one per GPU, else one per 4 CPUs)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    items, missing = expand_sources(args.sources)
    if args.ray is not None:
        from dtseg.cli.ray_run import run_on_ray

        return run_on_ray(args, items, missing)
    try:
        pipeline = build_pipeline(args)
        sinks = pipeline.open_sinks(args.out)
    except (DtsegError, ValueError, OSError) as exc:
        return fail(exc)
    failed: list[tuple[str, str]] = [(m, "no such file, folder or matching glob") for m in missing]
    for source, why in failed:
        print(f"error: {source}: {why}", file=sys.stderr)
    start = time.perf_counter()
    done = 0

    def failure(source: str, exc: Exception) -> None:
        log.debug("failed on %s", source, exc_info=exc)
        why = describe(exc)
        failed.append((source, why))
        tqdm.write(f"error: {source}: {why}", file=sys.stderr)

    try:
        with tqdm(total=len(items), unit="image", disable=len(items) < 2, file=sys.stderr) as bar:
            for item, frame, result in segment_items(pipeline, items):
                bar.set_postfix_str(item.name, refresh=False)
                try:
                    if isinstance(result, Exception):
                        raise result
                    for sink in sinks:
                        sink.write(item.name, frame, result)
                    done += 1
                except Exception as exc:  # noqa: BLE001 - one bad image must not stop the run
                    failure(item.source, exc)
                bar.update()
    finally:
        for sink in sinks:
            sink.close()
    summary(done, failed, time.perf_counter() - start, args.out, pipeline.random_label,
             getattr(pipeline.engine, "encoder_calls", None))
    return 1 if failed or not items else 0


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


def describe(exc: BaseException) -> str:
    """What the run reports for an image that failed."""
    return str(exc) if isinstance(exc, (DtsegError, OSError)) else f"{type(exc).__name__}: {exc}"


def expand_sources(sources: list[str]) -> tuple[list[Item], list[str]]:
    """Sources -> images in order (a folder's images sorted by name, a glob's matches sorted) with
    unique output names; and the sources that matched nothing."""
    paths: list[str] = []
    missing: list[str] = []
    for source in sources:
        if is_url(source):
            paths.append(source)
        elif Path(source).is_dir():
            paths += sorted(str(p) for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
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


def summary(done: int, failed: list[tuple[str, str]], seconds: float, out: str, random_label: str | None,
             encoder_calls: int | None = None) -> None:
    total = done + len(failed)
    passes = "" if encoder_calls is None else f" ({encoder_calls} encoder pass{'es' * (encoder_calls != 1)})"
    line = f"segmented {done} of {total} image{'s' * (total != 1)} in {seconds:.1f} s{passes} -> {out}"
    print(line + (f"; {len(failed)} failed:" if failed else ""), file=sys.stderr)
    for source, why in failed:
        print(f"  {source}: {why}", file=sys.stderr)
    if total == 0:
        print("no images found", file=sys.stderr)
    if random_label:
        print(f"NOTE: {random_label}", file=sys.stderr)
