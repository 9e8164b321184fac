"""The ML backend: Label Studio tasks -> predictions, interactive (clicks) or whole-task (pipeline).

One prediction per task, in order: ``{"result": [regions], "score", "model_version"}``; a task
that fails (no image, unreadable image, a click outside it, an unknown label, a bad label
config) gets ``{"result": [], "score": 0, "model_version", "error": message}`` while the
other tasks are answered as usual.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dtseg import __version__
from dtseg.engine import SamEngine
from dtseg.errors import DtsegError, ImageNotEmbeddedError, InputError
from dtseg.labelstudio.label_config import LabelConfig, parse_label_config
from dtseg.labelstudio.regions import ClickPrompt, mask_region, prompt_from_context
from dtseg.labelstudio.settings import Connection, LabelStudioConfig
from dtseg.server.common.images import decode_image
from dtseg.server.config import ServerConfig
from dtseg.server.routes.labelstudio.images import read_task_image
from dtseg.server.state import Services

log = logging.getLogger("dtseg.labelstudio")
PipelineFor = Callable[[Services, str], Any]  # (services, config name) -> a built dtseg Pipeline


@dataclass
class Connections:
    """``/setup`` calls by project (``"<id>.<created timestamp>"``, as Label Studio names them)."""

    by_project: dict[str, Connection] = field(default_factory=dict)
    schemas: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def remember(self, project: str, connection: Connection, schema: str | None) -> None:
        with self.lock:
            self.by_project[project] = connection
            if schema:
                self.schemas[project] = schema

    def get(self, project: str) -> tuple[Connection | None, str | None]:
        with self.lock:
            return self.by_project.get(project), self.schemas.get(project)


def model_version(engine: SamEngine, pipeline: Any = None, name: str | None = None) -> str:
    """``dtseg-<version> <sam model> <precision>``, with the pipeline's name and detectors first."""
    sam = f"{engine.model_name} {engine.dtype_name}"
    if pipeline is None:
        return f"dtseg-{__version__} {sam}"
    stages = []
    for stage in pipeline.stages:
        model = getattr(getattr(stage.provider, "config", None), "model", None)
        stages.append(f"{stage.name}({model})" if model else stage.name)
    return f"dtseg-{__version__} {name}: {' -> '.join(stages)} -> {sam}"


class Backend:
    """Predictions for Label Studio from one app's engine, config and pipelines."""

    def __init__(self, services: Services, pipeline_for: PipelineFor, connections: Connections) -> None:
        self.services, self.pipeline_for, self.connections = services, pipeline_for, connections

    @property
    def settings(self) -> LabelStudioConfig:
        return self.services.config.labelstudio

    def predict(self, tasks: list[Any], label_config: str | None, project: str, context: Any,
                namespace: str) -> list[dict[str, Any]]:
        """One prediction per task: interactive when ``context`` has results, else the pipeline's."""
        connection, schema = self.connections.get(project)
        interactive = isinstance(context, dict) and bool(context.get("result"))
        version = model_version(self.services.engine)
        try:
            config = parse_label_config(label_config or schema)
            pipeline = None if interactive else self._pipeline()
        except (InputError, _Unavailable) as exc:
            return [_error(version, exc) for _ in tasks]
        if pipeline is not None:
            version = model_version(self.services.engine, pipeline, self.settings.pipeline)
        predictions = []
        for i, task in enumerate(tasks):
            try:
                if interactive:
                    regions = self._interactive(task, config, context, connection, namespace)
                    predictions.append(_prediction(regions, version))
                else:
                    regions, unmapped = self._pre_annotate(task, config, pipeline, connection)
                    prediction = _prediction(regions, version)
                    if unmapped:
                        prediction["unmapped_classes"] = unmapped
                    predictions.append(prediction)
            except (DtsegError, ValueError) as exc:
                log.info("task %s: %s", _task_id(task, i), exc)
                predictions.append(_error(version, exc))
        return predictions

    # -- interactive ----------------------------------------------------------------------
    def _interactive(self, task: Any, config: LabelConfig, context: dict[str, Any], connection: Connection | None,
                     namespace: str) -> list[dict[str, Any]]:
        """The annotator's smart regions -> one mask. The task image is embedded once, under an id
        derived from its URL: later clicks on the task cost one decode. While the annotator
        refines (more than one point or box), the task's last mask logits are the mask input."""
        engine = self.services.engine
        url = _image_url(task, config)
        image_id = "labelstudio:" + hashlib.sha256(url.encode()).hexdigest()[:32]
        try:
            embedding = engine.get_embedding(image_id, namespace)
        except ImageNotEmbeddedError:
            rgb = self._read(url, connection)
            embedding = engine.embed_image(rgb, image_id, namespace)
        prompt = prompt_from_context(context, config, embedding.original_size, self.settings.negative_labels)
        refine = prompt.size > 1 and engine.has_mask_logits(image_id, namespace)
        result = engine.segment_image(image_id=image_id, namespace=namespace, **_arrays(prompt),
                                      mask_input="cached" if refine else None, multimask_output=not refine)
        best = int(np.argmax(result.scores[0]))
        region = mask_region(result.masks[0, best], prompt.label, float(result.scores[0, best]), config)
        return [] if region is None else [region]

    # -- pre-annotation -------------------------------------------------------------------
    def _pipeline(self) -> Any:
        name = self.settings.pipeline
        if not name:
            raise _Unavailable("pre-annotation needs a pipeline: start dtseg serve with "
                               "--set server.labelstudio.pipeline=NAME (a config in server.configs_dir)")
        try:
            return self.pipeline_for(self.services, name)
        except Exception as exc:  # noqa: BLE001 - InputError / HTTPException of the /segment helpers, or a broken config
            raise _Unavailable(f"pipeline {name!r}: {getattr(exc, 'detail', None) or exc}") from None

    def _pre_annotate(self, task: Any, config: LabelConfig, pipeline: Any,
                      connection: Connection | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The pipeline's objects as regions labelled by class name; classes the label config
        lacks are counted in ``unmapped`` (and their objects left out)."""
        rgb = self._read(_image_url(task, config), connection)
        detections = pipeline(rgb)
        names = detections.data.get("class_name")
        regions: list[dict[str, Any]] = []
        unmapped: Counter[str] = Counter()
        for i in range(len(detections)):
            name = None if names is None else str(names[i])
            label = config.label_named(name) if name else (config.labels[0] if len(config.labels) == 1 else None)
            if label is None:
                unmapped[name or "(no class)"] += 1
                continue
            region = mask_region(detections.mask[i], label, _score(detections, i), config)
            if region is not None:
                regions.append(region)
        if unmapped:
            log.warning("classes not in the label config's %s labels: %s", config.output_type, dict(unmapped))
        return regions, dict(unmapped)

    def _read(self, url: str, connection: Connection | None) -> np.ndarray:
        config: ServerConfig = self.services.config
        data = read_task_image(url, self.settings, config.url_fetch, connection, field="task.data")
        return decode_image(data, config, self.services.decode_budget, field="task.data")


class _Unavailable(Exception):
    """Every task of the request fails the same way (no pipeline, a pipeline that cannot be built)."""


def _image_url(task: Any, config: LabelConfig) -> str:
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        raise InputError("task.data", "the task has no data")
    url = data.get(config.value_key)
    if not isinstance(url, str) or not url.strip():
        raise InputError("task.data", f"the task has no image under data.{config.value_key} "
                                      f"(the label config's Image tag {config.to_name!r} reads ${config.value_key})")
    return url.strip()


def _arrays(prompt: ClickPrompt) -> dict[str, Any]:
    points = prompt.points[None] if len(prompt.points) else None
    return {"point_coords": points, "point_labels": None if points is None else prompt.labels[None],
            "boxes": None if prompt.box is None else prompt.box[None]}


def _score(detections: Any, i: int) -> float | None:
    for values in (detections.confidence, detections.data.get("sam_score")):
        if values is not None and len(values) > i and np.isfinite(values[i]):
            return float(values[i])
    return None


def _prediction(regions: list[dict[str, Any]], version: str) -> dict[str, Any]:
    scores = [r["score"] for r in regions if "score" in r]
    return {"result": regions, "score": float(np.mean(scores)) if scores else 0.0, "model_version": version}


def _error(version: str, exc: Exception) -> dict[str, Any]:
    return {"result": [], "score": 0.0, "model_version": version, "error": str(exc)}


def _task_id(task: Any, index: int) -> Any:
    return task.get("id", f"#{index}") if isinstance(task, dict) else f"#{index}"
