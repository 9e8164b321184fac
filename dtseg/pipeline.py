"""``Pipeline``: prompt stages -> one cached SAM embedding -> one batched decode -> ``sv.Detections``.

```python
pipeline = Pipeline.from_config("configs/default.yaml")
detections = pipeline("bus.jpg")  # row i: mask i, from prompt i
```
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from dtseg.config import PipelineConfig, SamConfig, StrictModel, apply_overrides, load_yaml, validate
from dtseg.contracts import Engine, PromptProvider, Sink, SinkTraits, Writer
from dtseg.errors import CheckpointNotFoundError, ConfigError, PromptError
from dtseg.io import ImageLike, load_image
from dtseg.plugins import PluginInfo, Registry, get_plugin_manager
from dtseg.prompts import Prompts
from dtseg.records import NUM_PROMPTS, RANDOM_WEIGHTS, prompt_detections
from dtseg.runner import RunSummary, expand_sources, run_items

log = logging.getLogger(__name__)

RANDOM_LABEL = "RANDOM WEIGHTS ({}): boxes and masks are meaningless"


@dataclass
class Stage:
    """A configured prompt provider: ``provider(frame, prompts) -> Prompts``."""

    name: str
    provider: PromptProvider
    info: PluginInfo


@dataclass
class LoadedConfig:
    """A validated pipeline config and where it came from."""

    config: PipelineConfig
    source: str  # the file name, or "<dict>"
    base_dir: Path | None  # relative paths resolve against this


class Pipeline:
    """Chained prompt stages, a ``SamEngine`` and the sink specs of one config.

    ``pipeline(image)`` returns ``sv.Detections`` whose row i is the mask of the i-th prompt the
    last stage produced (after any ``after_segment`` filters). Empty prompts give an empty
    result without running SAM.
    """

    def __init__(self, engine: Engine, stages: Sequence[Stage], *, registry: Registry | None = None,
                 loaded: LoadedConfig | None = None, multimask_output: bool = False, batch_size: int = 1) -> None:
        self.engine = engine
        self.batch_size = batch_size  # images per segment_batch call in folder runs
        self.stages = list(stages)
        self.registry = registry or Registry()
        self.loaded = loaded
        self.multimask_output = multimask_output
        check_concepts(engine, self.stages)
        self.random_parts = [s.name for s in self.stages if getattr(s.provider, "random_weights", False)]
        if getattr(engine, "random_weights", False):
            self.random_parts.insert(0, "sam")

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: str | Path | dict[str, Any] | PipelineConfig,
        overrides: Iterable[str] = (),
        *,
        plugins_dir: str | Path | None = None,
        strict: bool = False,
        device: str | None = None,
        allow_random: bool = False,
        registry: Registry | None = None,
        engine: Engine | None = None,
        keep_heap_default: bool = False,
    ) -> Pipeline:
        """Build from a YAML file, a dict or a ``PipelineConfig``.

        ``overrides`` are ``--set key=value`` strings; ``plugins_dir`` adds to the config's;
        ``device`` sets ``sam.device`` and every stage's ``device`` option left unset;
        ``allow_random`` replaces missing weights by random ones (loudly; demos only);
        ``registry`` / ``engine`` replace discovery / the SAM engine (tests, servers);
        ``keep_heap_default``: what ``sam.keep_heap: null`` means (dtseg's own commands: ``True``).
        """
        loaded = load_pipeline_config(config, overrides, device=device)
        cfg = loaded.config
        if registry is None:
            registry = Registry.collect(get_plugin_manager(plugins_dir or cfg.plugins_dir, cfg.plugins, strict))
        stages = [build_stage(registry, entry, i, loaded, device, allow_random) for i, entry in enumerate(cfg.prompts)]
        for i, entry in enumerate(cfg.sinks):  # fail on a bad sink config now, not after the first image
            name, options = next(iter(entry.items()))
            validate(registry.sink(name).config_model, options, loaded.source, prefix=f"sinks[{i}].{name}",
                     base_dir=loaded.base_dir)
        if engine is None:
            engine = build_engine(cfg, allow_random, keep_heap_default)
        pipeline = cls(engine, stages, registry=registry, loaded=loaded, multimask_output=cfg.multimask_output,
                       batch_size=cfg.batch_size)
        if pipeline.random_parts:
            log.warning("*** %s ***", pipeline.random_label)
        return pipeline

    @property
    def random_label(self) -> str | None:
        """A loud label when any model has random weights, else ``None``."""
        return RANDOM_LABEL.format(", ".join(self.random_parts)) if self.random_parts else None

    def open_sinks(self, out_dir: str | Path, sinks: Sequence[str | dict[str, Any]] | None = None,
                   per_run: bool | None = None, writer: Writer | None = None) -> list[Sink]:
        """``open_sinks`` with this pipeline's registry and config; a sink with a ``banner``
        attribute left at ``None`` gets the random-weights label, if any."""
        return open_sinks(self.registry, self.loaded, out_dir, sinks, per_run=per_run, writer=writer,
                          banner=self.random_label)

    # -- running ---------------------------------------------------------------------------
    def prompts(self, frame: np.ndarray) -> Prompts:
        """Run the stages on ``frame`` (RGB uint8 ``(H, W, 3)``): the prompts SAM will get."""
        prompts: Prompts | None = None
        for stage in self.stages:
            prompts = stage.provider(frame, prompts)
            if not isinstance(prompts, Prompts):
                raise TypeError(f"prompt provider {stage.name!r} ({stage.info.source}) returned "
                                f"{type(prompts).__name__}, not Prompts")
        assert prompts is not None  # PipelineConfig requires at least one stage
        return prompts

    def __call__(self, image: ImageLike, cache: bool = True) -> sv.Detections:
        """Segment one image (RGB array ``(H, W, 3)``, path or encoded bytes) -> ``sv.Detections``.

        The image is embedded once (cached by its content hash unless ``cache=False``, as for
        video frames) and all prompts are decoded in one batched call. ``detections.metadata``
        holds ``random_weights`` (a label, or None) and ``num_prompts`` (objects before
        ``after_segment`` filters).
        """
        return self.segment_batch([image], cache=cache)[0]

    def segment_batch(self, images: Sequence[ImageLike], cache: bool = True) -> list[sv.Detections]:
        """Segment several images; result i is what ``pipeline(images[i])`` gives.

        The stages run on every image first; the images that got prompts then go through the
        SAM encoder ``batch_size`` at a time (the engine's ``embed_images``), and each image's
        prompts (any number, ragged across images) are decoded against its own embedding.
        So a provider is called on all the images before any ``after_segment``: it must not
        carry per-image state from one to the other. On a CPU batching gains nothing.
        """
        frames = [load_image(image, "image" if len(images) == 1 else f"images[{i}]") for i, image in enumerate(images)]
        prompts = [self.prompts(frame) for frame in frames]
        need_sam = [i for i, p in enumerate(prompts) if len(p) or p.concepts is not None]
        sources: dict[int, Any] = {i: frames[i] for i in need_sam}
        if len(need_sam) > 1:
            embedded = self.engine.embed_images([frames[i] for i in need_sam], batch_size=self.batch_size, cache=cache)
            sources = dict(zip(need_sam, embedded, strict=True))
        results = []
        for i, (frame, image_prompts) in enumerate(zip(frames, prompts, strict=True)):
            if i in sources and image_prompts.concepts is not None:
                detections = concept_detections(self.engine, sources[i], image_prompts, cache)
            elif i in sources:
                detections = self.engine.segment(sources[i], image_prompts, multimask_output=self.multimask_output,
                                                 cache=cache)
            else:
                detections = prompt_detections(image_prompts)  # no prompts: no SAM
            for stage in self.stages:
                after = getattr(stage.provider, "after_segment", None)
                if after is not None:
                    detections = after(frame, detections)
            detections.metadata.update({RANDOM_WEIGHTS: self.random_label, NUM_PROMPTS: len(image_prompts)})
            results.append(detections)
        return results

    def run(self, source: str | Path | Sequence[str | Path], out: str | Path = "out", *,
            sinks: Sequence[str | dict[str, Any] | Sink] | None = None, progress: bool = True) -> RunSummary:
        """Segment images and write each with the sinks as soon as it is done: ``dtseg segment``
        from Python. ``source``: an image, a folder (its images, by name), a glob or an http(s)
        URL, or a list of them. ``sinks``: the config's (default), or names / ``{name: options}``
        / sink objects. Every sink is closed at the end. An image that fails is reported on
        stderr and skipped; Ctrl-C stops after the image in progress. Returns a ``RunSummary``
        (``done``, ``failed``, ``seconds``, ``interrupted``; ``report()`` as text)."""
        items, missing = expand_sources([source] if isinstance(source, (str, Path)) else list(source))
        if sinks is None:
            chosen = self.open_sinks(out)
        else:
            for i, sink in enumerate(sinks):
                if not isinstance(sink, (str, dict, Sink)):
                    raise ConfigError(f"sinks[{i}]: expected a sink name, {{name: options}} or an object with "
                                      f"write(name, frame, detections) and close(), got {type(sink).__name__}")
            opened = iter(self.open_sinks(out, [s for s in sinks if isinstance(s, (str, dict))]))
            chosen = [next(opened) if isinstance(s, (str, dict)) else s for s in sinks]
        return run_items(self, items, chosen, out, missing=missing, progress=progress)

    def process_video(self, source: Any, **options: Any) -> Iterator[tuple[int, sv.Detections]]:
        """Yield ``(frame_index, sv.Detections)`` for a video file, a folder of frames, a webcam
        index or a stream URL; see ``dtseg.video.process_video`` for ``options`` (``start``,
        ``stride``, ``max_frames``, ``track``, ...)."""
        from dtseg.video import process_video

        return process_video(self, source, **options)


def check_concepts(engine: Engine, stages: Sequence[Stage]) -> None:
    """A stage that asks for concept prompts (``concept_stage``, the ``text`` stage) needs an
    engine that takes them (``capabilities.prompts``); else it finds boxes with an engine of its
    own (``detect_with_own_engine``) if it can, or it is a ``ConfigError`` naming the setting."""
    capabilities = getattr(engine, "capabilities", None)
    takes = getattr(capabilities, "prompts", ())
    for i, stage in enumerate(stages):
        if getattr(stage.provider, "concept_stage", False) and "concepts" not in takes:
            own = getattr(stage.provider, "detect_with_own_engine", None)
            if own is not None:
                own(f"prompts[{i}].{stage.name}")
                continue
            model = getattr(engine, "model_name", "this model")
            raise ConfigError(f"prompts[{i}].{stage.name}: concept prompts (phrases, exemplar boxes) run on the "
                              f"pipeline's SAM engine, and {model} takes points and boxes only: set sam.model: "
                              "sam3 (--set sam.model=sam3)")


def concept_detections(engine: Any, source: Any, prompts: Prompts, cache: bool = True) -> sv.Detections:
    """``prompts.concepts`` on ``source`` (an image or its ``Embedding``) -> ``sv.Detections``,
    one class per concept prompt (``dtseg.engine.concepts.to_detections``), plus
    ``data["prompt_source"]`` (the stage). ``prompts`` must have no point/box objects."""
    from dtseg.engine.concepts import PROMPT_SOURCE, to_detections

    query = prompts.concepts
    assert query is not None
    if len(prompts):
        raise PromptError("concepts", "concept prompts (the text stage) and point/box prompts cannot be mixed "
                                      "in one pipeline: put the text stage alone")
    results = engine.segment_concepts(source, list(query.prompts), threshold=query.threshold, cache=cache)
    detections = to_detections(results, query.nms_iou)
    detections.data[PROMPT_SOURCE] = np.full(len(detections), query.source, dtype=object)
    return detections


def open_sinks(registry: Registry, loaded: LoadedConfig | None, out_dir: str | Path,
               sinks: Sequence[str | dict[str, Any]] | None = None, *, per_run: bool | None = None,
               writer: Writer | None = None, banner: str | None = None) -> list[Sink]:
    """The sinks of ``loaded``'s config, or ``sinks`` given like the config's ``sinks:`` (names,
    or ``{name: options}``), writing under ``out_dir`` (created). Close each when done.

    ``per_run``: only the sinks that declare ``per_run`` (one output for the whole run, like
    ``coco``: ``dtseg.contracts.SinkTraits``), or only the others (``False``); ``None``: all.
    ``writer``: what the sinks that take one write through (default: their own ``FileWriter``
    under ``out_dir``); the others get ``out_dir``. ``banner``: set on a sink whose ``banner``
    attribute is ``None`` (the random-weights label)."""
    source, base_dir = (loaded.source, loaded.base_dir) if loaded else ("<pipeline>", None)
    if sinks is not None:
        source = "the sinks argument"
        entries = validate(PipelineConfig, {"sinks": list(sinks)}, source, base_dir=base_dir).sinks
    else:
        entries = loaded.config.sinks if loaded else []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    opened: list[Sink] = []
    for i, entry in enumerate(entries):
        name, options = next(iter(entry.items()))
        info = registry.sink(name)
        traits = SinkTraits.of(info.cls)
        if per_run is not None and traits.per_run != per_run:
            continue
        config = validate(info.config_model, options, source, prefix=f"sinks[{i}].{name}", base_dir=base_dir)
        sink = info.cls(config, writer if writer is not None and traits.takes_writer else out)
        if banner and getattr(sink, "banner", "") is None:  # e.g. the annotated sink
            sink.banner = banner
        opened.append(sink)
    return opened


def load_pipeline_config(
    config: str | Path | dict[str, Any] | PipelineConfig,
    overrides: Iterable[str] = (),
    device: str | None = None,
) -> LoadedConfig:
    """Read and validate a pipeline config; ``overrides`` (``key=value``) apply before validation."""
    if isinstance(config, PipelineConfig):
        data, source, base_dir = config.model_dump(), "<config>", None
    elif isinstance(config, dict):
        data, source, base_dir = copy.deepcopy(config), "<dict>", None
    else:
        path = Path(config)
        data, source, base_dir = load_yaml(path), str(path), path.resolve().parent
    for key in ("prompts", "sinks"):  # defaults first, so --set prompts.yolo.conf=... reaches them
        if key not in data:
            data[key] = PipelineConfig.model_fields[key].get_default(call_default_factory=True, validated_data={})
    apply_overrides(data, list(overrides))
    if device is not None:
        data.setdefault("sam", {})["device"] = device
    return LoadedConfig(validate(PipelineConfig, data, source, base_dir=base_dir), source, base_dir)


def build_stage(registry: Registry, entry: dict[str, dict[str, Any]], index: int, loaded: LoadedConfig,
                device: str | None = None, allow_random: bool = False) -> Stage:
    """Validate a stage's options against its provider's ``Config`` and instantiate it."""
    name, options = next(iter(entry.items()))
    info = registry.provider(name)
    options = dict(options)
    if device is not None and "device" in info.config_model.model_fields and options.get("device") is None:
        options["device"] = device
    config: StrictModel = validate(info.config_model, options, loaded.source, prefix=f"prompts[{index}].{name}",
                                   base_dir=loaded.base_dir)
    try:
        return Stage(name, info.cls(config), info)
    except CheckpointNotFoundError as exc:
        fallback = getattr(info.cls, "random_fallback", None)
        if not allow_random or fallback is None:
            raise
        log.warning("%s\n*** --allow-random: %s falls back to RANDOM weights ***", exc.problem.rstrip(" :\n"), name)
        return Stage(name, info.cls(fallback(config)), info)


def build_engine(config: PipelineConfig, allow_random: bool = False, keep_heap_default: bool = False) -> Engine:
    """``config.sam.build_engine()``; with ``allow_random``, weights that cannot be found or
    downloaded become random ones (``random_if_missing``)."""
    sam = random_if_missing(config.sam) if allow_random else config.sam
    return sam.build_engine(config.cache, keep_heap_default=keep_heap_default)


def random_if_missing(sam: SamConfig, name: str = "sam") -> SamConfig:
    """``--allow-random``: ``sam`` with random weights when its checkpoint was not given and
    cannot be found or downloaded, said loudly (``name``: the config section). A checkpoint that
    was given and is missing stays an error (raised when the engine is built)."""
    from dtseg.engine.checkpoints import RANDOM, resolve_checkpoint

    if sam.checkpoint is not None:
        return sam
    try:
        resolve_checkpoint(sam.model if isinstance(sam.model, str) else sam.model.model_dump())
    except CheckpointNotFoundError as exc:
        log.warning("%s\n*** --allow-random: %s runs with RANDOM weights: its masks are meaningless ***",
                    exc.problem.rstrip(" :\n"), name)
        return sam.model_copy(update={"checkpoint": RANDOM})
    return sam
