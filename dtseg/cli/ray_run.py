"""``dtseg segment ... --ray [ADDRESS]``: the same folder run on Ray Data.

The items go through ``map_batches`` over a pool of ``SegmentActor``s: each actor builds one
``Pipeline`` (engine and prompt stages) from the same config, runs ``segment_items`` on its
batches (``batch_size`` as in a local run, same fallback to one by one) and writes the per-image
sinks itself (annotated images, JSON, masks: ``--out`` must be a folder every node sees). The
driver runs the per-run sinks (``SinkTraits.per_run``, e.g. ``coco``) over the results in input
order through the local run's own loop (``dtseg.runner.write_results``), so their output, the
report and the exit status are the local run's. The actors send the frames back only when a
per-run sink reads pixels (``SinkTraits.needs_pixels``); the others get a frame of the right
shape without pixels. Per-image errors come back as rows.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from dtseg.cli.common import fail, overrides
from dtseg.contracts import SinkTraits
from dtseg.errors import DtsegError, RandomWeightsWarning
from dtseg.runner import Item, Result, RunSummary, report_missing, segment_items, write_one, write_results

log = logging.getLogger("dtseg.segment")
CPUS_PER_ACTOR = 4  # default pool on CPUs: one engine per 4 CPUs


class SegmentActor:
    """One engine and the prompt stages; ``__call__`` segments a batch of items -> result rows."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from dtseg.pipeline import Pipeline

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)
            self.pipeline = Pipeline.from_config(spec["config"], spec["overrides"], plugins_dir=spec["plugins_dir"],
                                                 strict=spec["strict"], device=spec["device"],
                                                 allow_random=spec["allow_random"], keep_heap_default=True)
        self.sinks = self.pipeline.open_sinks(spec["out"], per_run=False)
        self.send_masks, self.send_frames = spec["send_masks"], spec["send_frames"]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        items = [Item(str(s), str(n)) for s, n in zip(batch["source"], batch["name"], strict=True)]
        rows: dict[str, list[Any]] = {"index": [], "error": [], "height": [], "width": [], "result": [],
                                      "encoder_calls": [], "random_label": []}
        before = getattr(self.pipeline.engine, "encoder_calls", 0)
        position = {item.source + "\0" + item.name: int(i) for item, i in zip(items, batch["index"], strict=True)}
        for item, frame, result in segment_items(self.pipeline, items):
            error = write_one(item, frame, result, self.sinks)
            sent = None
            if error is None and not isinstance(result, Exception):
                sent = pack(result, self.send_masks, frame if self.send_frames else None)
            rows["index"].append(position[item.source + "\0" + item.name])
            rows["error"].append(error)
            rows["height"].append(-1 if frame is None else int(frame.shape[0]))
            rows["width"].append(-1 if frame is None else int(frame.shape[1]))
            rows["result"].append(sent)
            rows["encoder_calls"].append(0)
            rows["random_label"].append(self.pipeline.random_label or "")
        if rows["index"]:
            rows["encoder_calls"][0] = getattr(self.pipeline.engine, "encoder_calls", 0) - before
        return rows


class WorkerError(DtsegError):
    """An image that failed on a Ray worker, with the reason the worker gave."""


def pack(detections: sv.Detections, masks: bool, frame: np.ndarray | None) -> bytes:
    """``sv.Detections`` (with ``masks``: bit-packed, 8x smaller) and the frame, if sent -> bytes
    for the driver."""
    mask = detections.mask
    detections.mask = None
    packed = (np.packbits(np.asarray(mask), axis=-1), mask.shape) if masks and mask is not None else None
    try:
        return pickle.dumps((detections, packed, frame), protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        detections.mask = mask


def unpack(data: bytes) -> tuple[sv.Detections, np.ndarray | None]:
    """``pack``'s bytes -> the detections and the frame (``None`` if it was not sent)."""
    detections, packed, frame = pickle.loads(data)  # our own actors' rows, within one Ray job
    if packed is not None:
        bits, shape = packed
        detections.mask = np.unpackbits(bits, axis=-1, count=shape[-1]).astype(bool).reshape(shape)
    return detections, frame


def shape_only_frame(height: int, width: int) -> np.ndarray:
    """A read-only ``(height, width, 3)`` uint8 frame that holds no pixels (one zero, broadcast):
    what the driver gives a per-run sink that reads only the frame's shape."""
    return np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (height, width, 3))


def driver_results(rows: Any, items: list[Item], summary: RunSummary) -> Iterator[Result]:
    """The actors' rows as the local loop's results, in input order; adds each row's encoder
    passes and random-weights label to ``summary``."""
    summary.encoder_calls = 0
    for row in rows:
        item = items[int(row["index"])]
        summary.encoder_calls += int(row["encoder_calls"])
        summary.random_weights = summary.random_weights or str(row["random_label"]) or None
        if row["error"] is not None:
            yield item, None, WorkerError(str(row["error"]))
            continue
        detections, frame = unpack(row["result"])
        if frame is None:
            frame = shape_only_frame(int(row["height"]), int(row["width"]))
        yield item, frame, detections


def dataset_rows(ray: Any, args: argparse.Namespace, items: list[Item], config: Any,
                 spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The actors' rows in input order; the dataset starts at the first row asked for (inside
    ``write_results``, which then closes the sinks however it ends)."""
    if items:
        yield from _dataset(ray, args, items, config, spec).iter_rows()


def run_on_ray(args: argparse.Namespace, items: list[Item], missing: list[str]) -> int:
    """The Ray version of ``dtseg.cli.segment.run``: same outputs, report and exit status."""
    try:
        import ray
    except ImportError:
        return fail(DtsegError("--ray needs Ray: pip install 'dtseg[ray]' (or 'ray[data]')"))
    from dtseg.pipeline import load_pipeline_config, open_sinks
    from dtseg.plugins import Registry, get_plugin_manager

    out = Path(args.out).resolve()
    config: str | dict[str, Any] = str(Path(args.config).resolve()) if args.config else {}
    plugins_dir = str(Path(args.plugins_dir).resolve()) if args.plugins_dir else None
    try:  # check the config and open the per-run sinks before starting anything
        loaded = load_pipeline_config(config, overrides(args), device=args.device)
        registry = Registry.collect(get_plugin_manager(plugins_dir or loaded.config.plugins_dir,
                                                       loaded.config.plugins, args.strict))
        run_sinks = open_sinks(registry, loaded, out, per_run=True)
    except (DtsegError, ValueError, OSError) as exc:
        return fail(exc)
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if args.ray == "local" else args.ray, logging_level=logging.WARNING)
    summary = RunSummary(Path(args.out))
    report_missing(summary, missing, lambda source, why: print(f"error: {source}: {why}", file=sys.stderr))
    spec = {"config": config, "overrides": overrides(args), "plugins_dir": plugins_dir, "strict": args.strict,
            "device": args.device, "allow_random": args.allow_random, "out": str(out),
            "send_masks": bool(run_sinks), "send_frames": any(SinkTraits.of(sink).needs_pixels for sink in run_sinks)}
    try:
        rows = dataset_rows(ray, args, items, loaded.config, spec)
        write_results(driver_results(rows, items, summary), run_sinks, summary, total=len(items))
    except Exception as exc:  # noqa: BLE001 - e.g. an actor that cannot build its pipeline
        return fail(exc)
    finally:
        if started:
            ray.shutdown()
    print(summary.report(), file=sys.stderr)
    if summary.interrupted:
        return 130
    return 1 if summary.failed or not items else 0


def _dataset(ray: Any, args: argparse.Namespace, items: list[Item], config: Any, spec: dict[str, Any]) -> Any:
    """``from_items`` -> ``map_batches(SegmentActor)`` over a fixed pool, results in input order."""
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if (args.device or config.sam.device) != "cpu" else 0
    cpus = max(1, int(resources.get("CPU", 1)))
    actors = args.ray_actors or (gpus or max(1, cpus // CPUS_PER_ACTOR))
    if actors < 1:
        raise DtsegError(f"--ray-actors: expected at least 1, got {actors}")
    cpus_per_actor = max(1, cpus // actors) if not gpus else 1
    if config.sam.threads is None:  # torch threads: the actor's CPUs, not the whole machine's
        spec = {**spec, "overrides": [*spec["overrides"], f"sam.threads={cpus_per_actor}"]}
    print(f"dtseg segment: {len(items)} images on Ray Data: {actors} actor{'s' * (actors != 1)}, "
          f"{'1 GPU' if gpus else f'{cpus_per_actor} CPU'}{'s' * (not gpus and cpus_per_actor != 1)} each",
          file=sys.stderr)
    rows = [{"index": i, "source": item.source, "name": item.name} for i, item in enumerate(items)]
    return ray.data.from_items(rows).map_batches(
        SegmentActor, fn_constructor_kwargs={"spec": spec}, batch_size=config.batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor, num_gpus=1 if gpus else 0,
        batch_format="numpy")
