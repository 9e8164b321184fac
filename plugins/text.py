"""``text``: segment what you name: every instance matching a phrase (SAM 3 concept prompts).

```yaml
sam:
  model: sam3                      # concept prompts need a SAM 3 model
prompts:
  - text:
      phrases: [person, "red car"]   # one class per phrase: class_id 0, 1; class_name the phrase
      conf: 0.5                      # SAM 3's score (sigmoid(logit) x presence) must exceed it
      nms_iou: 0.7                   # optional: drop a mask overlapping a better one of any phrase
      exemplars:                     # optional: boxes that show the concept (another class each)
        - boxes: [[40, 390, 260, 910]]
          negative: [[660, 380, 810, 880]]   # "not like this"
          text: person               # optional; the class name is the phrase, else "visual"
```

``dtseg segment photo.jpg --text "person, red car"`` is this stage alone. With a SAM 3
``sam.model`` the stage asks for concept prompts (``Prompts.concepts``) and the pipeline runs
them on its own engine's image embedding: the phrases and the masks share one encoder pass per
image. With another family, the stage's own SAM 3 engine (``model``, ``checkpoint``,
``device``) finds the boxes and they prompt that family's masks (two encoder passes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field, field_validator, model_validator

from dtseg.config import StrictModel
from dtseg.engine.concepts import PROMPT_SOURCE, ConceptPrompt, ConceptQuery, to_detections
from dtseg.errors import CheckpointNotFoundError, ConfigError, PromptError
from dtseg.hookspecs import Register, hookimpl
from dtseg.prompts import Prompts

if TYPE_CHECKING:
    from dtseg.engine import SamEngine

Box = tuple[float, float, float, float]


class Exemplar(StrictModel):
    """Exemplar boxes (``[x0, y0, x1, y1]`` pixels of the image) that show one concept, with an
    optional phrase: every instance like the positive boxes and unlike the negative ones."""

    boxes: list[Box] = Field(default_factory=list, description="positive exemplars: more like this")
    negative: list[Box] = Field(default_factory=list, description="negative exemplars: not like this")
    text: str | None = Field(None, description="a phrase to go with the boxes")

    @model_validator(mode="after")
    def _has_box(self) -> Exemplar:
        if not self.boxes and not self.negative:
            raise ValueError("give at least one box in boxes or negative")
        return self


class TextPrompts:
    """The same concept prompts for every frame: class i is ``phrases[i]``, then the exemplars."""

    concept_stage = True  # the pipeline checks that its engine takes concept prompts

    class Config(StrictModel):
        phrases: list[str] = Field(default_factory=list, description="one class per phrase, e.g. [person, red car]")
        exemplars: list[Exemplar] = Field(default_factory=list, description="concepts shown by example boxes")
        conf: float = Field(0.5, ge=0.0, le=1.0, description="keep instances whose SAM 3 score exceeds this")
        nms_iou: float | None = Field(None, ge=0.0, le=1.0,
                                      description="drop a mask whose IoU with a better one (any class) exceeds this")
        model: str = Field("sam3", description="the SAM 3 model that finds the boxes when sam.model takes no "
                                               "concept prompts (its boxes then prompt sam.model's masks)")
        checkpoint: str | None = Field(None, description="that model's weights (default: found as for sam; "
                                                         "random: seeded random weights)")
        device: str | None = Field(None, description="that model's device (default: auto)")

        @field_validator("phrases")
        @classmethod
        def _phrases(cls, phrases: list[str]) -> list[str]:
            cleaned = [p.strip() for p in phrases]
            if any(not p for p in cleaned):
                raise ValueError("a phrase is empty")
            twice = sorted({p for p in cleaned if cleaned.count(p) > 1})
            if twice:
                raise ValueError(f"phrases given twice: {twice}")
            return cleaned

        @model_validator(mode="after")
        def _has_prompt(self) -> TextPrompts.Config:
            if not self.phrases and not self.exemplars:
                raise ValueError("give at least one phrase in phrases (or exemplar boxes in exemplars)")
            return self

    def __init__(self, config: Config) -> None:
        prompts = [ConceptPrompt.of(p, f"phrases[{i}]") for i, p in enumerate(config.phrases)]
        for i, ex in enumerate(config.exemplars):
            labels = [True] * len(ex.boxes) + [False] * len(ex.negative)
            prompts.append(ConceptPrompt.of({"text": ex.text, "boxes": np.array([*ex.boxes, *ex.negative], np.float32),
                                             "box_labels": labels}, f"exemplars[{i}]"))
        self.query = ConceptQuery(tuple(prompts), config.conf, config.nms_iou, "text")
        self.config = config
        self.detector: SamEngine | None = None  # own SAM 3 engine, when the pipeline's takes no concepts

    @property
    def random_weights(self) -> bool:
        return bool(self.detector is not None and self.detector.random_weights)

    def detect_with_own_engine(self, where: str) -> None:
        """The pipeline's engine takes no concept prompts: build this stage's SAM 3 engine
        (``model``), whose boxes (one class per phrase) then prompt the pipeline's masks."""
        from dtseg.engine import SamEngine

        try:
            engine = SamEngine.load(self.config.model, self.config.checkpoint, device=self.config.device or "auto")
        except CheckpointNotFoundError as exc:
            raise ConfigError(f"{where}: sam.model takes no concept prompts, so this stage finds the boxes with its "
                              f"own {self.config.model} engine, whose weights are missing ({exc.problem.strip()}); "
                              f"set sam.model: sam3 (one engine for both), or {where}.checkpoint (a file, or "
                              "random to try it)") from exc
        if "concepts" not in engine.capabilities.prompts:
            raise ConfigError(f"{where}.model: {self.config.model} takes no concept prompts; name a SAM 3 model "
                              "(sam3), or set sam.model: sam3")
        self.detector = engine

    def __call__(self, frame: np.ndarray, prompts: Prompts | None) -> Prompts:
        if prompts is not None:
            raise PromptError("text", "the text stage must come first (it does not add to earlier prompts)")
        if self.detector is not None:
            results = self.detector.segment_concepts(frame, list(self.query.prompts), threshold=self.query.threshold,
                                                     cache=False)
            detections = to_detections(results, self.query.nms_iou)
            detections.data[PROMPT_SOURCE] = np.full(len(detections), self.query.source, dtype=object)
            return Prompts.from_detections(detections, "box")
        concepts = Prompts.empty()
        concepts.concepts = self.query
        return concepts


@hookimpl
def dtseg_register_prompt_providers(register: Register) -> None:
    register("text", TextPrompts)
