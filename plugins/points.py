"""``points``: manual prompts from the config (or ``--set``): points, negative points, a box.

```yaml
prompts:
  - points:
      objects:
        - points: [[400, 300]]          # foreground points, pixels [x, y]
          negative: [[420, 500]]        # background points
        - box: [50, 400, 250, 900]      # [x1, y1, x2, y2] pixels
          class_name: person
```
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from dtseg.config import StrictModel
from dtseg.errors import PromptError
from dtseg.hookspecs import Register, hookimpl
from dtseg.prompts import Prompts

Point = tuple[float, float]


class ObjectPrompt(StrictModel):
    """One object to segment: any of foreground points, background points and a box."""

    points: list[Point] = Field(default_factory=list, description="foreground points [x, y], pixels")
    negative: list[Point] = Field(default_factory=list, description="background points [x, y], pixels")
    box: tuple[float, float, float, float] | None = Field(None, description="[x1, y1, x2, y2], pixels")
    class_id: int | None = Field(None, ge=0, description="default: one id per class name (0, 1, ... in order "
                                 "of first use; a name given an id elsewhere keeps it)")
    class_name: str = "object"

    @model_validator(mode="after")
    def _has_prompt(self) -> ObjectPrompt:
        if not self.points and self.box is None:
            raise ValueError("give at least one foreground point or a box")
        return self


class PointsPrompts:
    """The same objects for every frame."""

    class Config(StrictModel):
        objects: list[ObjectPrompt] = Field(min_length=1, description="the objects to segment")

    def __init__(self, config: Config) -> None:
        objects = [{"points": [*o.points, *o.negative], "labels": [1] * len(o.points) + [0] * len(o.negative),
                    "box": o.box} for o in config.objects]
        base = Prompts.from_objects(objects)
        self.prompts = Prompts(base.points, base.labels, base.boxes, class_id=class_ids(config.objects),
                               data={"class_name": np.array([o.class_name for o in config.objects])})

    def __call__(self, frame: np.ndarray, prompts: Prompts | None) -> Prompts:
        if prompts is not None:
            raise PromptError("points", "the points stage must come first (it does not add to earlier prompts)")
        return self.prompts[np.arange(len(self.prompts))]  # a copy: later stages may edit theirs


def class_ids(objects: list[ObjectPrompt]) -> np.ndarray:
    """``(N,)`` int: each object's ``class_id``, or else its class name's: the id another object of
    that name was given, else the smallest id not yet used, names in order of first use. So
    ``person, bus, person`` -> ``0, 1, 0``, and COCO files name every category right."""
    by_name: dict[str, int] = {}
    for o in objects:
        if o.class_id is not None:
            by_name.setdefault(o.class_name, o.class_id)
    used = set(by_name.values()) | {o.class_id for o in objects if o.class_id is not None}
    next_id = 0
    for o in objects:
        if o.class_name not in by_name:
            while next_id in used:
                next_id += 1
            by_name[o.class_name] = next_id
            used.add(next_id)
    return np.array([by_name[o.class_name] if o.class_id is None else o.class_id for o in objects], dtype=int)


@hookimpl
def dtseg_register_prompt_providers(register: Register) -> None:
    register("points", PointsPrompts)
