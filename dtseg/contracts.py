"""Typed contracts between the pipeline and its parts: prompt providers, sinks and the writer they
write through, the SAM engine, and the pipeline as the run loops see it.

These are ``typing.Protocol``s: a class satisfies one by having the methods, not by inheriting.
``dtseg.engine.SamEngine`` is the engine; the built-in sinks (``dtseg.sinks``) and providers
(``dtseg_plugins``) are examples of the others. Plugin authors can type-check against them::

    from dtseg.contracts import PromptProvider
    provider: PromptProvider = MyProvider(MyProvider.Config())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import supervision as sv

from dtseg.io import ImageLike
from dtseg.prompts import Prompts

if TYPE_CHECKING:  # the engine module imports torch, the pipeline module this one: only for type checkers
    from dtseg.engine.engine import Embedding
    from dtseg.pipeline import LoadedConfig


@runtime_checkable
class PromptProvider(Protocol):
    """A pipeline stage: ``frame`` RGB uint8 ``(H, W, 3)`` and the previous stage's prompts
    (``None`` for the first stage) -> the prompts for SAM (or for the next stage).

    Built from its ``Config`` (a ``dtseg.config.StrictModel``): ``cls(config)``. Must keep no
    per-image state between ``__call__`` and ``after_segment`` (batches call every image first).
    """

    def __call__(self, frame: np.ndarray, prompts: Prompts | None) -> Prompts: ...


@runtime_checkable
class SegmentFilter(Protocol):
    """A provider's optional second step, after SAM: filter or label the detections
    (``detections.mask`` ``(N, H, W)`` bool); called in stage order."""

    def after_segment(self, frame: np.ndarray, detections: sv.Detections) -> sv.Detections: ...


@runtime_checkable
class Sink(Protocol):
    """An output writer, built as ``cls(config, out_dir)``: ``write`` once per image (``name`` is
    the image's file stem, ``frame`` RGB uint8 ``(H, W, 3)``), ``close`` once at the end.

    Optional class attributes declare what a sink is (``SinkTraits`` holds their defaults)."""

    def write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Writer(Protocol):
    """Where a sink's files go. ``path`` is relative to the output folder, with ``/`` between
    folders; ``data`` the whole file. ``dtseg.sinks.writer`` has the two kinds: ``FileWriter``
    (atomic files under a folder, each one recorded for ``--skip-existing``) and ``MemoryWriter``
    (a dict of bytes, for HTTP answers)."""

    #: The folder the paths are relative to; ``None`` where nothing goes to disk.
    root: Path | None

    def write(self, path: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class SinkTraits:
    """What a sink class declares about itself, as optional class attributes; a sink written
    without them gets these defaults.

    * ``per_run``: one output for the whole run, written at ``close()`` (``coco``): a Ray run
      gives it every image in the driver, and ``--skip-existing`` refuses it (the images skipped
      would be missing from that output).
    * ``needs_pixels``: ``write`` reads the frame's pixels, not only its shape. Where it is
      ``False`` a run may pass a frame of the right shape without the pixels (a Ray run's driver
      does, instead of shipping every image back from the workers).
    * ``takes_writer``: the second argument of ``cls(config, out)`` may be a ``Writer`` instead
      of a folder, and every file goes through it.
    """

    per_run: bool = False
    needs_pixels: bool = True
    takes_writer: bool = False

    @classmethod
    def of(cls, sink: type | object) -> SinkTraits:
        """The traits a sink class (or instance) declares, defaults where it declares none."""
        return cls(**{name: bool(getattr(sink, name, default)) for name, default in
                      (("per_run", False), ("needs_pixels", True), ("takes_writer", False))})


@runtime_checkable
class Engine(Protocol):
    """The part of ``SamEngine`` the pipeline uses. Signatures match ``SamEngine``'s exactly
    (``tests/test_contracts.py`` checks this, and the shared test fake against it)."""

    random_weights: bool

    def embed_images(
        self,
        images: Sequence[ImageLike],
        image_ids: Sequence[str | None] | None = None,
        namespace: str = "",
        batch_size: int = 4,
        cache: bool = True,
    ) -> list[Embedding]:
        """Embed several images (RGB ``(H, W, 3)`` uint8, paths or encoded bytes), ``batch_size``
        per encoder pass; ``cache=False`` stores nothing."""
        ...

    def segment(
        self,
        image: ImageLike | str | Embedding,
        prompts: Prompts,
        multimask_output: bool = False,
        namespace: str = "",
        cache: bool = True,
    ) -> sv.Detections:
        """Decode ``prompts`` on an image or one of ``embed_images``'s embeddings: row i of the
        result is prompt i, with ``mask`` ``(N, H, W)`` bool and ``data["sam_score"]`` ``(N,)``."""
        ...


@runtime_checkable
class Segmenter(Protocol):
    """The part of ``dtseg.pipeline.Pipeline`` that the run loops use (``dtseg.runner``,
    ``dtseg.video``): ``pipeline(frame)`` is one image's detections, ``segment_batch`` several."""

    engine: Engine
    batch_size: int  # images per segment_batch call in folder runs
    loaded: LoadedConfig | None  # the config it was built from, if any

    @property
    def random_label(self) -> str | None:
        """A loud label when any model has random weights, else ``None``."""
        ...

    def prompts(self, frame: np.ndarray) -> Prompts:
        """The prompt stages on RGB uint8 ``(H, W, 3)`` ``frame``: what SAM will get."""
        ...

    def __call__(self, image: ImageLike, cache: bool = True) -> sv.Detections:
        """Segment one image -> detections, row i from prompt i."""
        ...

    def segment_batch(self, images: Sequence[ImageLike], cache: bool = True) -> list[sv.Detections]:
        """Segment several images; result i is ``self(images[i])``."""
        ...
