"""``dtseg segment ... --ray [ADDRESS]``: the same folder run on Ray Data.

The items go through ``map_batches`` over a pool of ``SegmentActor``s: each actor builds one
``Pipeline`` (engine and prompt stages) from the same config, runs ``segment_items`` on its
batches (``batch_size`` as in a local run, same fallback to one by one) and writes the per-image
sinks itself (annotated images, JSON, masks: ``--out`` must be a folder every node sees). The
driver runs the sinks that make one file for the whole run (``per_run = True``, e.g. ``coco``)
over the results in input order, so their output is the local run's. Per-image errors come
back as rows and are reported and counted as in a local run.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dtseg.cli.common import fail, overrides
from dtseg.runner import Item, RunSummary, describe, segment_items
from dtseg.errors import DtsegError, RandomWeightsWarning

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
        self.send_detections = spec["send_detections"]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        items = [Item(str(s), str(n)) for s, n in zip(batch["source"], batch["name"])]
        rows: dict[str, list[Any]] = {"index": [], "error": [], "height": [], "width": [], "detections": [],
                                      "encoder_calls": [], "random_label": [], "objects": []}
        before = getattr(self.pipeline.engine, "encoder_calls", 0)
        position = {item.source + "\0" + item.name: int(i) for item, i in zip(items, batch["index"])}
        for item, frame, result in segment_items(self.pipeline, items):
            error, detections = None, None
            try:
                if isinstance(result, Exception):
                    raise result
                for sink in self.sinks:
                    sink.write(item.name, frame, result)
                detections = pack(result) if self.send_detections else None
            except Exception as exc:  # noqa: BLE001 - one bad image must not stop the run
                log.debug("failed on %s", item.source, exc_info=exc)
                error = describe(exc)
            rows["index"].append(position[item.source + "\0" + item.name])
            rows["error"].append(error)
            rows["height"].append(-1 if frame is None else int(frame.shape[0]))
            rows["width"].append(-1 if frame is None else int(frame.shape[1]))
            rows["detections"].append(detections)
            rows["encoder_calls"].append(0)
            rows["random_label"].append(self.pipeline.random_label or "")
            rows["objects"].append(0 if error is not None else len(result))
        if rows["index"]:
            rows["encoder_calls"][0] = getattr(self.pipeline.engine, "encoder_calls", 0) - before
        return rows


def pack(detections: Any) -> bytes:
    """``sv.Detections`` -> bytes for the driver, masks bit-packed (8x smaller)."""
    mask = detections.mask
    if mask is not None:
        detections.mask = None
        packed = (np.packbits(mask, axis=-1), mask.shape)
    else:
        packed = None
    try:
        return pickle.dumps((detections, packed), protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        detections.mask = mask


def unpack(data: bytes) -> Any:
    detections, packed = pickle.loads(data)  # noqa: S301 - our own actors' rows, within one Ray job
    if packed is not None:
        bits, shape = packed
        detections.mask = np.unpackbits(bits, axis=-1, count=shape[-1]).astype(bool).reshape(shape)
    return detections


def run_on_ray(args: argparse.Namespace, items: list[Item], missing: list[str]) -> int:
    """The Ray version of ``dtseg.cli.segment.run``: same outputs, report and exit status."""
    try:
        import ray
    except ImportError:
        return fail(DtsegError("--ray needs Ray: pip install 'dtseg[ray]' (or 'ray[data]')"))
    from dtseg.pipeline import Pipeline, load_pipeline_config
    from dtseg.plugins import Registry, get_plugin_manager

    out = Path(args.out).resolve()
    config = str(Path(args.config).resolve()) if args.config else {}
    plugins_dir = str(Path(args.plugins_dir).resolve()) if args.plugins_dir else None
    try:  # check the config and open the per-run sinks before starting anything
        loaded = load_pipeline_config(config, overrides(args), device=args.device)
        registry = Registry.collect(get_plugin_manager(plugins_dir or loaded.config.plugins_dir,
                                                       loaded.config.plugins, args.strict))
        run_sinks = Pipeline(None, [], registry=registry, loaded=loaded).open_sinks(out, per_run=True)
    except (DtsegError, ValueError, OSError) as exc:
        return fail(exc)
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if args.ray == "local" else args.ray, logging_level=logging.WARNING)
    failed: list[tuple[str, str]] = [(m, "no such file, folder or matching glob") for m in missing]
    for source, why in failed:
        print(f"error: {source}: {why}", file=sys.stderr)
    done: list[str] = []
    encoder_calls = objects = 0
    random_label: str | None = None
    start = time.perf_counter()
    try:
        dataset = _dataset(ray, args, items, loaded.config, {
            "config": config, "overrides": overrides(args), "plugins_dir": plugins_dir, "strict": args.strict,
            "device": args.device, "allow_random": args.allow_random, "out": str(out),
            "send_detections": bool(run_sinks)})
        with tqdm(total=len(items), unit="image", disable=len(items) < 2, file=sys.stderr) as bar:
            for row in dataset.iter_rows() if items else []:
                item = items[int(row["index"])]
                bar.set_postfix_str(item.name, refresh=False)
                encoder_calls += int(row["encoder_calls"])
                random_label = random_label or str(row["random_label"]) or None
                error = row["error"]
                if error is None:
                    try:
                        frame = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (row["height"], row["width"], 3))
                        for sink in run_sinks:
                            sink.write(item.name, frame, unpack(row["detections"]))
                        done.append(item.name)
                        objects += int(row["objects"])
                    except Exception as exc:  # noqa: BLE001
                        error = describe(exc)
                if error is not None:
                    failed.append((item.source, error))
                    tqdm.write(f"error: {item.source}: {error}", file=sys.stderr)
                bar.update()
    except Exception as exc:  # noqa: BLE001 - e.g. an actor that cannot build its pipeline
        return fail(exc)
    finally:
        for sink in run_sinks:
            sink.close()
        if started:
            ray.shutdown()
    summary = RunSummary(Path(args.out), done=done, failed=failed, seconds=time.perf_counter() - start,
                         random_weights=random_label, encoder_calls=encoder_calls, objects=objects)
    print(summary.report(), file=sys.stderr)
    return 1 if failed or not items else 0


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
          f"{f'1 GPU' if gpus else f'{cpus_per_actor} CPU'}{'s' * (not gpus and cpus_per_actor != 1)} each",
          file=sys.stderr)
    rows = [{"index": i, "source": item.source, "name": item.name} for i, item in enumerate(items)]
    return ray.data.from_items(rows).map_batches(
        SegmentActor, fn_constructor_kwargs={"spec": spec}, batch_size=config.batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor, num_gpus=1 if gpus else 0,
        batch_format="numpy")
