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

``dtseg segment photo.jpg --text "person, red car"`` is this stage alone. The stage asks for
concept prompts (``Prompts.concepts``); the pipeline runs them on its own engine's image
embedding, so the phrases and the masks share one encoder pass per image.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator, model_validator

from dtseg.config import StrictModel
from dtseg.engine.concepts import ConceptPrompt, ConceptQuery
from dtseg.errors import PromptError
from dtseg.hookspecs import Register, hookimpl
from dtseg.prompts import Prompts

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

    def __call__(self, frame: np.ndarray, prompts: Prompts | None) -> Prompts:
        if prompts is not None:
            raise PromptError("text", "the text stage must come first (it does not add to earlier prompts)")
        concepts = Prompts.empty()
        concepts.concepts = self.query
        return concepts


@hookimpl
def dtseg_register_prompt_providers(register: Register) -> None:
    register("text", TextPrompts)
