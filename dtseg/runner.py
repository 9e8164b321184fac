"""Folder runs: images from files, folders, globs and URLs through a pipeline into sinks.

Each image is written by every sink as soon as it is segmented; an image that fails (unreadable,
a provider error, ...) is reported and skipped, and the run goes on. ``Pipeline.run`` and
``dtseg segment`` both use ``run_items``; it, and the driver of a Ray run (``dtseg.cli.ray_run``),
write and count results in ``write_results``. The pipeline is anything with the
``dtseg.contracts.Segmenter`` methods::

    summary = pipeline.run("photos/", out="out", sinks=["json", "yolo_seg"])
    print(summary.report())    # "segmented 41 of 42 images in 12.3 s -> out; 1 failed: ..."
"""

from __future__ import annotations

import glob
import logging
import re
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import supervision as sv
from tqdm import tqdm

from dtseg.contracts import Engine, Segmenter, Sink
from dtseg.errors import DtsegError, InputError
from dtseg.io import is_url, load_image

if TYPE_CHECKING:
    from dtseg.cli.ledger import Ledger
    from dtseg.sinks.writer import FileWriter

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
URL_TIMEOUT_S = 30.0
MAX_URL_BYTES = 200 << 20
MISSING = "no such file, folder or matching glob"


@dataclass(frozen=True)
class Item:
    """One image to process: where it is and the output name (a unique file stem)."""

    source: str
    name: str


#: One image's outcome: its item, its RGB uint8 ``(H, W, 3)`` frame (``None`` if it could not be
#: read) and its detections, or the ``Exception`` it raised.
Result = tuple[Item, np.ndarray | None, sv.Detections | Exception]


@dataclass
class RunSummary:
    """What a run did: ``done`` output names written, ``failed`` ``(source, why)`` pairs (sources
    that matched nothing included), wall ``seconds``, whether Ctrl-C ``interrupted`` it."""

    out: Path
    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    random_weights: str | None = None  # the pipeline's random-weights label, if any
    skipped: int = 0  # images left out because an earlier run finished them (--skip-existing)
    encoder_calls: int | None = None  # images through the SAM encoder (cache hits cost none)
    objects: int = 0  # objects written, all images together

    @property
    def total(self) -> int:
        return len(self.done) + len(self.failed)

    @property
    def ok(self) -> bool:
        """Every image written, at least one image, not interrupted."""
        return not self.failed and bool(self.done) and not self.interrupted

    def report(self) -> str:
        """The run in a few lines of text (what ``dtseg segment`` prints at the end)."""
        total, done = self.total, len(self.done)
        verb = "interrupted after" if self.interrupted else "segmented"
        calls = self.encoder_calls
        passes = "" if calls is None else f" ({calls} encoder pass{'es' * (calls != 1)})"
        line = (f"{verb} {done} of {total} image{'s' * (total != 1)} in {self.seconds:.1f} s{passes}, "
                f"{self.objects} object{'s' * (self.objects != 1)} -> {self.out}")
        if self.skipped:
            line += f" ({self.skipped} skipped: done before)"
        lines = [line + (f"; {len(self.failed)} failed:" if self.failed else "")]
        lines += [f"  {source}: {why}" for source, why in self.failed]
        if total + self.skipped == 0:
            lines.append("no images found")
        if self.random_weights:
            lines.append(f"NOTE: {self.random_weights}")
        return "\n".join(lines)


def print_error(source: str, why: str) -> None:
    """The default ``on_error``: one line on stderr that does not break the progress bar."""
    tqdm.write(f"error: {source}: {why}", file=sys.stderr)


def run_items(
    pipeline: Segmenter,
    items: Sequence[Item],
    sinks: Sequence[Sink],
    out: str | Path,
    *,
    missing: Sequence[str] = (),
    progress: bool = True,
    on_error: Callable[[str, str], None] = print_error,
    ledger: Ledger | None = None,
    writer: FileWriter | None = None,
    skipped: int = 0,
) -> RunSummary:
    """Segment ``items`` with ``pipeline`` (``pipeline.batch_size`` at a time) and write each with
    every sink (``write_results``). ``missing``: sources that matched nothing, counted as failed.
    ``progress``: a first line saying how long the SAM encoder takes per image here
    (``dtseg.eta``), then a tqdm bar on stderr (from 2 images). ``ledger`` (``--skip-existing``)
    records each finished image with the files ``writer``, the sinks' writer, wrote for it;
    ``skipped`` is reported as done before."""
    summary = RunSummary(Path(out), random_weights=pipeline.random_label, skipped=skipped)
    calls_before = getattr(pipeline.engine, "encoder_calls", None)
    report_missing(summary, missing, on_error)
    if progress and items:
        announce(pipeline.engine, len(items))
    try:
        return write_results(segment_items(pipeline, list(items)), sinks, summary, total=len(items),
                             progress=progress, on_error=on_error, ledger=ledger, writer=writer)
    finally:
        calls_after = getattr(pipeline.engine, "encoder_calls", None)  # SamEngine's counter, not the protocol's
        if calls_before is not None and calls_after is not None:
            summary.encoder_calls = calls_after - calls_before


def report_missing(summary: RunSummary, missing: Sequence[str], on_error: Callable[[str, str], None]) -> None:
    """Count and report the sources that matched nothing."""
    for source in missing:
        summary.failed.append((source, MISSING))
        on_error(source, MISSING)


def write_results(
    results: Iterable[Result],
    sinks: Sequence[Sink],
    summary: RunSummary,
    *,
    total: int,
    progress: bool = True,
    on_error: Callable[[str, str], None] = print_error,
    ledger: Ledger | None = None,
    writer: FileWriter | None = None,
) -> RunSummary:
    """Write each of ``total`` results with every sink, in order, into ``summary`` (done, failed,
    objects, seconds); close the sinks at the end, also after an error or Ctrl-C (which stops
    the run after the image in progress: ``summary.interrupted``). An image a sink fails on
    counts as failed. ``ledger`` records each finished image with the files ``writer`` wrote."""
    start = time.perf_counter()
    try:
        with tqdm(total=total, unit="image", disable=not progress or total < 2, file=sys.stderr) as bar:
            for item, frame, result in results:
                bar.set_postfix_str(item.name, refresh=False)
                why = write_one(item, frame, result, sinks)
                written = writer.take_written() if writer is not None else []
                if why is not None:
                    summary.failed.append((item.source, why))
                    on_error(item.source, why)
                elif not isinstance(result, Exception):
                    if ledger is not None:
                        ledger.record(item.name, item.source, written)
                    summary.done.append(item.name)
                    summary.objects += len(result)
                bar.update()
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        for sink in sinks:
            sink.close()
        summary.seconds = time.perf_counter() - start
    return summary


def write_one(item: Item, frame: np.ndarray | None, result: sv.Detections | Exception,
              sinks: Sequence[Sink]) -> str | None:
    """Write one result with every sink: ``None``, or why the image failed (its own error, or a
    sink's: one bad image must not stop the run)."""
    try:
        if isinstance(result, Exception):
            raise result
        assert frame is not None  # an image that was read
        for sink in sinks:
            sink.write(item.name, frame, result)
        return None
    except Exception as exc:
        log.debug("failed on %s", item.source, exc_info=exc)
        return describe(exc)


def announce(engine: Engine, images: int) -> None:
    """Say on stderr what the run is about to do, before the first encoder pass (seconds long on
    a CPU, and the bar only moves after it): the number of images and, where it can be
    estimated, how long the encoder takes per image here."""
    from dtseg.eta import embed_estimate

    estimate = embed_estimate(engine)
    tqdm.write(f"segmenting {images} image{'s' * (images != 1)}" + (f"; {estimate}" if estimate else ""),
               file=sys.stderr)


def describe(exc: BaseException) -> str:
    """What a run reports for an image that failed."""
    return str(exc) if isinstance(exc, (DtsegError, OSError)) else f"{type(exc).__name__}: {exc}"


def segment_items(pipeline: Segmenter, items: list[Item]) -> Iterator[Result]:
    """``(item, frame, result)`` for every item, in order: ``result`` is an ``sv.Detections`` or
    the ``Exception`` that item raised (``frame`` is ``None`` if it could not be read). Images go
    through ``pipeline.segment_batch`` ``pipeline.batch_size`` at a time; if a batch fails where
    each of its images alone succeeds (e.g. out of memory), the rest of the run goes one by one."""
    batch_size, first = pipeline.batch_size, 0
    while first < len(items):
        chunk, first = items[first : first + batch_size], first + batch_size
        readable: list[tuple[Item, np.ndarray]] = []
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


def segment_each(pipeline: Segmenter, frames: list[np.ndarray]) -> tuple[list[sv.Detections | Exception], bool]:
    """``pipeline.segment_batch(frames)``; if the batch fails, each frame on its own (its stages
    run again), so one bad image costs only its own result. Returns an ``sv.Detections`` or the
    ``Exception`` per frame, and whether the batch as a whole failed. Embeddings stored before
    a failure stay in the engine's cache."""
    if len(frames) > 1:
        try:
            return list(pipeline.segment_batch(frames)), False
        except Exception:  # retried one by one below, which names the culprit
            log.debug("batch of %d failed; retrying one by one", len(frames), exc_info=True)
    results: list[sv.Detections | Exception] = []
    for frame in frames:
        try:
            results.append(pipeline(frame))
        except Exception as exc:  # noqa: BLE001
            results.append(exc)
    return results, len(frames) > 1


def expand_sources(sources: Sequence[str | Path], recursive: bool = False,
                   exclude: Path | None = None) -> tuple[list[Item], list[str]]:
    """Sources -> images in order (a folder's images sorted by name, with ``recursive`` also in its
    subfolders, except those under ``exclude``; a glob's matches sorted) with unique output names;
    and the sources that matched nothing."""
    paths: list[str] = []
    missing: list[str] = []
    for source in map(str, sources):
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


def read_image(source: str) -> np.ndarray:
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
