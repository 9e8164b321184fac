"""Configuration: YAML files -> validated pydantic models. Unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from dtseg.errors import ConfigError

if TYPE_CHECKING:
    from dtseg.engine import SamEngine


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


def resolve_path(value: Any, info: ValidationInfo) -> Any:
    """A relative path in a config file means relative to that file's folder.

    ``validate(..., base_dir=DIR)`` passes the folder in the validation context; without it
    (a dict built in code) paths are left as given.
    """
    base = (info.context or {}).get("base_dir")
    if base is None or value is None or not isinstance(value, (str, Path)) or str(value) == "random":
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else Path(base) / path)


def resolve_existing_path(value: Any, info: ValidationInfo) -> Any:
    """Like ``resolve_path``, but only when the file exists next to the config: a bare name such
    as ``yolov8n.pt`` stays a name that its library looks up itself."""
    resolved = resolve_path(value, info)
    return resolved if resolved is not value and Path(resolved).exists() else value


#: A file or folder path; relative paths resolve against the config file's folder.
ConfigPath = Annotated[str, BeforeValidator(resolve_path)]
#: A path or a library's model name (``yolov8n.pt``); resolved only if the file is there.
PathOrName = Annotated[str, BeforeValidator(resolve_existing_path)]


class SpecConfig(StrictModel):
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: list[int]


class CacheConfig(StrictModel):
    """The ``cache:`` section: tiers behind the in-process embedding cache (``sam.cache_mb``).

    ```yaml
    cache:
      redis_url: redis://127.0.0.1:6379/0   # shared by processes and machines; null: none
      ttl_s: 86400                           # Redis entries expire (null: never; Redis' policy evicts)
      dir: ~/.cache/dtseg/embeddings         # persistent across runs; null: none
      dir_max_mb: 10240                      # the folder's bound (least recently used files go first)
    ```
    """

    redis_url: str | None = None
    ttl_s: int | None = Field(86400, gt=0)
    redis_timeout_s: float = Field(1.0, gt=0)  # connect and each command; a slower Redis counts as down
    dir: ConfigPath | None = None
    dir_max_mb: float = Field(10240, gt=0)
    mask_logits: bool = False  # refinement logits through the tiers too (the server's default: true)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"expected redis://host:port/db, rediss://... or unix://..., got {value!r}")
        return value or None


class SamConfig(StrictModel):
    """The ``sam:`` section: which model, which weights, where it runs."""

    model: str | SpecConfig = "vit_b"  # any name `dtseg models` lists, or a SAM ViT spec
    checkpoint: ConfigPath | None = None  # a path, "random" (tests only), or None: cache, then download
    device: str = "auto"
    # auto: bf16 where the device runs it natively (CUDA with bf16, CPUs with AMX/AVX512-BF16), else fp32
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    cache_mb: int = 1024
    cache_fp16: bool = False
    # which forward passes run: auto = dtseg's fast ones on the CPU (where they were benchmarked),
    # the reference modules on CUDA/MPS; fast / reference: that one on any device
    encoder: Literal["auto", "fast", "reference"] = "auto"
    decoder: Literal["auto", "fast", "reference"] = "auto"
    encoder_int8: bool = False
    # torch.compile the encoder: no gain on CPUs; the first call (and each new batch size) compiles,
    # and the compiled graph builds the whole attention mask at once (~0.8 GB per vit_b image)
    encoder_compile: bool = False
    threads: int | None = None  # torch CPU threads; default: the process's CPU quota
    # keep freed memory in the process heap (glibc; every library's, for the process's life):
    # null = on in dtseg's own commands and server, off in a program using the library
    keep_heap: bool | None = None

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: Any) -> Any:
        if isinstance(value, str):
            from dtseg.families import model_names

            if value not in model_names():
                raise ValueError(f"unknown model {value!r}; known models: {', '.join(model_names())}")
        return value

    def build_engine(self, cache: CacheConfig | None = None, *,
                     keep_heap_default: bool = False) -> SamEngine:
        """The engine; ``cache`` adds the Redis and disk tiers (``CacheTierError`` if unusable).
        ``keep_heap_default``: what ``keep_heap: null`` means (dtseg's commands and server: ``True``)."""
        from dtseg.engine import SamEngine

        model = self.model if isinstance(self.model, str) else self.model.model_dump()
        keep_heap = keep_heap_default if self.keep_heap is None else self.keep_heap
        return SamEngine.load(model, self.checkpoint, device=self.device, dtype=self.dtype,
                              cache_bytes=self.cache_mb << 20, cache_fp16=self.cache_fp16, encoder=self.encoder,
                              decoder=self.decoder, encoder_int8=self.encoder_int8,
                              encoder_compile=self.encoder_compile, threads=self.threads, keep_heap=keep_heap,
                              cache_tiers=cache)


#: A chain of stages: ``[{yolo: {conf: 0.3}}, {zones: {...}}]`` (a bare name means no options).
StageList = list[dict[str, dict[str, Any]]]


def _default_stages(*names: str) -> StageList:
    """``[{name: {}}, ...]``: stages with their default options."""
    return [{name: {}} for name in names]


class VideoConfig(StrictModel):
    """The ``video:`` section (``dtseg video``): how frames become objects (docs/video.md)."""

    mode: Literal["detect", "propagate"] = Field(
        "detect", description="detect: the whole pipeline on every frame, IDs by ByteTrack; propagate: SAM 2.x or "
                              "SAM 3 carries each object by its memory, the prompt stages run on keyframes only")
    detect_every: int = Field(0, ge=0, description="propagate: run the prompt stages every N processed frames "
                                                   "(0: on the first frame only)")
    match_iou: float = Field(0.5, gt=0, le=1, description="propagate: mask IoU at which a detection is a live "
                                                          "object (re-anchors it) rather than a new one")
    reanchor: bool = Field(True, description="propagate: a matching detection makes its keyframe a "
                                             "conditioning frame of the object")
    lost_s: float = Field(1.0, ge=0, description="propagate: seconds an object may stay absent before it is "
                                                 "retired (its ID is never reused)")
    max_objects: int = Field(32, ge=1, description="propagate: live objects at most; new detections beyond "
                                                   "it are skipped (logged)")
    max_cond_frames: int = Field(4, ge=1, description="propagate: conditioning frames kept per object")
    image_size: int | None = Field(None, ge=64, description="propagate: SAM 2 input side for the video "
                                                            "(multiple of 64; default: the model's 1024; "
                                                            "SAM 3: its own only)")


class PipelineConfig(StrictModel):
    """A pipeline file: the SAM engine, where plugins come from, prompt stages and sinks."""

    sam: SamConfig = Field(default_factory=SamConfig)
    plugins: list[str] = Field(default_factory=list, description="dotted module paths to load as plugins")
    plugins_dir: ConfigPath | None = Field(None, description="a folder whose *.py files are plugins")
    prompts: StageList = Field(default_factory=lambda: _default_stages("yolo"), min_length=1,
                               description="prompt stages, run in order")
    sinks: StageList = Field(default_factory=lambda: _default_stages("annotated", "json"),
                             description="output writers")
    multimask_output: bool = Field(False, description="SAM predicts 3 masks per object and keeps the best")
    video: VideoConfig = Field(default_factory=VideoConfig)
    batch_size: int = Field(1, ge=1, le=64, description="images `dtseg segment` embeds together (for GPUs; "
                                                        "a CPU gains nothing)")
    cache: CacheConfig = Field(default_factory=CacheConfig, description="Redis and disk tiers behind the "
                                                                         "in-process embedding cache")

    @field_validator("prompts", "sinks", mode="before")
    @classmethod
    def _stages(cls, value: Any) -> Any:
        """Accept ``- yolo`` and ``- yolo:`` (no options) as ``{yolo: {}}``; one name per entry."""
        if not isinstance(value, list):
            return value
        out = []
        for i, entry in enumerate(value):
            if isinstance(entry, str):
                entry = {entry: {}}
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ValueError(f"entry {i}: expected one name with its options, like "
                                 f"{{yolo: {{conf: 0.3}}}}, got {entry!r}")
            (name, options), = entry.items()
            out.append({name: {} if options is None else options})
        return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def validate(model: type[StrictModel], data: Any, source: str, *, prefix: str = "",
             base_dir: str | Path | None = None) -> Any:
    """``model.model_validate(data)`` with errors that name the source, the key and what was expected.

    ``prefix`` is the key path of ``data`` inside the file (``prompts[0].yolo``); ``base_dir``
    is the folder relative paths resolve against (see ``ConfigPath``).
    """
    try:
        return model.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        lines = [f"{source}: invalid configuration"]
        for err in exc.errors():
            where = ".".join([prefix] * bool(prefix) + [str(p) for p in err["loc"]]) or "(top level)"
            if err["type"] == "extra_forbidden":
                known = _known_keys(model, err["loc"][:-1])
                lines.append(f"  {where}: unknown key" + (f"; expected one of: {', '.join(known)}" if known else ""))
                continue
            lines.append(f"  {where}: {err['msg']}" + (f" (got {err['input']!r})" if err["type"] != "missing" else ""))
        raise ConfigError("\n".join(lines)) from None


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) model at ``loc``, or [] where the path leaves the models."""
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set a.b.c=value`` overrides (values parsed as YAML) to a nested dict, in place.

    In a list, a key is an index (``prompts.0.conf``) or the name of a one-key stage mapping
    (``prompts.yolo.conf=0.5`` sets ``conf`` of the ``{yolo: {...}}`` entry).
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. sam.device=cpu")
        node: Any = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                node = _list_child(node, part, item, create=True)
                continue
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, (dict, list)):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:i + 1])!r} is not a section")
            node = child
        value = yaml.safe_load(raw)
        if isinstance(node, list):
            index = _list_index(node, parts[-1], item)
            node[index] = value
        else:
            node[parts[-1]] = value
    return data


def _list_index(items: list[Any], part: str, item: str) -> int:
    if part.lstrip("-").isdigit():
        index = int(part)
        if not -len(items) <= index < len(items):
            raise ConfigError(f"--set {item!r}: index {index} is out of range (the list has {len(items)} entries)")
        return index
    for i, entry in enumerate(items):  # a bare stage name: give it an options mapping
        if entry == part:
            items[i] = {part: {}}
    matches = [i for i, entry in enumerate(items) if isinstance(entry, dict) and part in entry]
    names = [e if isinstance(e, str) else next(iter(e)) for e in items if isinstance(e, (str, dict)) and e]
    if len(matches) != 1:
        why = "no" if not matches else "more than one"
        raise ConfigError(f"--set {item!r}: {why} entry named {part!r} (entries: {names}); use its index instead")
    return matches[0]


def _list_child(items: list[Any], part: str, item: str, create: bool) -> Any:
    index = _list_index(items, part, item)
    entry = items[index]
    if not part.lstrip("-").isdigit():  # a named stage: descend into its options
        if entry[part] is None and create:
            entry[part] = {}
        entry = entry[part]
    if not isinstance(entry, (dict, list)):
        raise ConfigError(f"--set {item!r}: {part!r} is not a section")
    return entry
