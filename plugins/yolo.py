"""``yolo``: an ultralytics detector whose boxes (or box centres) prompt SAM.

```yaml
prompts:
  - yolo:
      model: yolov8n.pt      # any ultralytics weights, or a model .yaml (random weights: tests only)
      conf: 0.25
      classes: [person, bus] # names or ids; omit for all
      prompt: box            # box | center | box+center
```

The detector's class, class name and confidence travel to the output; its box is kept in
``data["detector_box"]`` ``(N, 4)`` xyxy pixels (the ``center`` mode sends SAM no box).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import supervision as sv
from pydantic import Field

from dtseg.config import PathOrName, StrictModel
from dtseg.errors import CheckpointNotFoundError, ConfigError, PromptError
from dtseg.hookspecs import Register, hookimpl
from dtseg.prompts import Prompts

log = logging.getLogger(__name__)

RANDOM_CONF, RANDOM_MAX_DET = 1e-4, 8  # what --allow-random uses for a random-init detector


class YoloWeightsNotFoundError(CheckpointNotFoundError):
    """The detector's weights are neither on disk nor downloadable."""


class YoloPrompts:
    """Detect objects with ultralytics; one prompt per detection."""

    class Config(StrictModel):
        model: PathOrName = Field("yolov8n.pt", description="ultralytics weights (.pt) or model .yaml")
        conf: float = Field(0.25, ge=0, le=1, description="minimum detector confidence")
        iou: float = Field(0.7, ge=0, le=1, description="NMS IoU threshold")
        imgsz: int = Field(640, ge=32, description="detector input size, pixels")
        classes: list[int | str] | None = Field(None, description="keep only these classes (names or ids)")
        max_det: int = Field(300, ge=1, description="at most this many detections per image")
        device: str | None = Field(None, description="cpu, cuda, cuda:0, mps; default: ultralytics picks")
        prompt: Literal["box", "center", "box+center"] = Field("box", description="what SAM gets per detection")

    def __init__(self, config: Config) -> None:
        self.config = config
        self.model = load_model(config.model)
        self.random_weights = is_random(config.model)
        self.names: dict[int, str] = dict(self.model.names)
        self.class_ids = class_ids(config.classes, self.names)

    @classmethod
    def random_fallback(cls, config: Config) -> Config:
        """The same detector built from its ``.yaml`` with random weights (``--allow-random``), at
        a confidence so low that it returns boxes (a random head scores about 1.6e-4)."""
        update = {"model": Path(config.model).with_suffix(".yaml").name, "conf": min(config.conf, RANDOM_CONF),
                  "max_det": min(config.max_det, RANDOM_MAX_DET)}
        log.warning("yolo: random detector with conf=%g, max_det=%d so that the demo has boxes",
                    update["conf"], update["max_det"])
        return config.model_copy(update=update)

    def __call__(self, frame: np.ndarray, prompts: Prompts | None) -> Prompts:
        """``frame`` RGB uint8 ``(H, W, 3)`` -> one prompt per detection, in the detector's order."""
        if prompts is not None:
            raise PromptError("yolo", "the yolo stage must come first (it detects on the whole frame)")
        c = self.config
        device = None if c.device in (None, "auto") else c.device
        with _keep_torch_threads():
            results = self.model.predict(np.ascontiguousarray(frame[:, :, ::-1]), conf=c.conf, iou=c.iou,
                                         imgsz=c.imgsz, classes=self.class_ids, max_det=c.max_det,
                                         device=device, verbose=False)
        detections = sv.Detections.from_ultralytics(results[0])
        detections.data["detector_box"] = detections.xyxy.astype(np.float32)
        if len(detections) == 0:  # from_ultralytics gives an empty float class_name array
            detections.data["class_name"] = np.zeros(0, dtype=str)
        return Prompts.from_detections(detections, c.prompt)


@contextmanager
def _keep_torch_threads() -> Iterator[None]:
    """ultralytics' device selection sets torch's process-wide thread count to cpu_count - 1,
    which would silently slow SAM down for the rest of the process: put it back."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def coco_names_for_random(model: Any) -> None:
    """A detector built from a model ``.yaml`` names its classes "0".."79"; one of COCO's 80 classes
    (``yolov8n.yaml``: what ``--allow-random`` builds in place of ``yolov8n.pt``) gets COCO's names,
    as its ``.pt`` has, so configs that pick classes by name (``classes: [person]``) run on it."""
    from ultralytics.utils import ROOT, YAML

    names = dict(model.names)
    if len(names) == 80 and all(str(k) == v for k, v in names.items()):
        model.model.names = dict(YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"])


def is_random(model: str) -> bool:
    return Path(model).suffix.lower() in (".yaml", ".yml")


def load_model(model: str) -> Any:
    """An ``ultralytics.YOLO``. A ``.yaml`` builds random weights (loudly); missing ``.pt``
    weights that cannot be downloaded raise ``YoloWeightsNotFoundError`` saying where to get them."""
    from ultralytics import YOLO

    if is_random(model):
        log.warning("yolo: %s builds a detector with RANDOM weights: its boxes are meaningless "
                    "(tests and demos only)", model)
        detector = YOLO(model)
        coco_names_for_random(detector)
        return detector
    if Path(model).suffix.lower() == ".pt" and _local_weights(model) is None:
        if os.environ.get("DTSEG_OFFLINE") == "1":
            raise _missing(model, "downloads are disabled (DTSEG_OFFLINE=1)")
        try:
            return YOLO(model)  # ultralytics downloads its own release assets
        except Exception as exc:
            if _local_weights(model) is None:
                raise _missing(model, f"{type(exc).__name__}: {exc}") from exc
            raise
    return YOLO(model)


def class_ids(classes: list[int | str] | None, names: dict[int, str]) -> list[int] | None:
    """Class names or ids -> ids of ``names``; an unknown one is a ``ConfigError``."""
    if classes is None:
        return None
    by_name = {v: k for k, v in names.items()}
    ids = []
    for c in classes:
        cid = by_name.get(c) if isinstance(c, str) else c
        if cid is None or cid not in names:
            shown = ", ".join(f"{k}:{v}" for k, v in list(names.items())[:20])
            raise ConfigError(f"yolo.classes: the model has no class {c!r}; it has {shown}"
                              + (" ..." if len(names) > 20 else ""))
        ids.append(int(cid))
    return ids


def _local_weights(model: str) -> Path | None:
    from ultralytics.utils import SETTINGS

    for path in (Path(model).expanduser(), Path(SETTINGS["weights_dir"]) / model):
        if path.is_file():
            return path
    return None


def _missing(model: str, reason: str) -> YoloWeightsNotFoundError:
    from ultralytics.utils import SETTINGS, downloads

    name = Path(model).name
    target = Path(model) if Path(model).parent != Path(".") else Path(SETTINGS["weights_dir"]) / name
    if name in downloads.GITHUB_ASSETS_NAMES:
        release = inspect.signature(downloads.attempt_download_asset).parameters["release"].default
        fetch = f"Download https://github.com/{downloads.GITHUB_ASSETS_REPO}/releases/download/{release}/{name}"
    else:
        fetch = f"{name} is not an ultralytics release asset: train or export it first"
    random = "builds a detector with random weights (meaningless boxes; demos and tests only)"
    stand_in = Path(name).with_suffix(".yaml")
    return YoloWeightsNotFoundError(
        f"yolo: the detector weights {model} are not on this machine and could not be downloaded "
        f"({reason}).\n  {fetch}\n  and put it at {target} (or set prompts.yolo.model to its path).\n", {
            "python": f"  Without the file, Pipeline.from_config(..., allow_random=True) {random}.",
            "cli": f"  Without the file, --allow-random {random}.",
            "config": f"  Without the file, prompts.yolo.model: {stand_in} {random}."})


@hookimpl
def dtseg_register_prompt_providers(register: Register) -> None:
    register("yolo", YoloPrompts)
