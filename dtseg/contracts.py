"""Typed contracts between the pipeline and its parts: prompt providers, sinks, the SAM engine.

These are ``typing.Protocol``s: a class satisfies one by having the methods, not by inheriting.
``dtseg.engine.SamEngine`` is the engine; the built-in sinks (``dtseg.sinks``) and providers
(``dtseg_plugins``) are examples of the others. Plugin authors can type-check against them::

    from dtseg.contracts import PromptProvider
    provider: PromptProvider = MyProvider(MyProvider.Config())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

import numpy as np
import supervision as sv

from dtseg.io import ImageLike
from dtseg.prompts import Prompts

if TYPE_CHECKING:  # the engine module imports torch: only for type checkers
    from dtseg.engine.engine import Embedding


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
    the image's file stem, ``frame`` RGB uint8 ``(H, W, 3)``), ``close`` once at the end."""

    def write(self, name: str, frame: np.ndarray, detections: sv.Detections) -> None: ...

    def close(self) -> None: ...


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
    ) -> list["Embedding"]:
        """Embed several images (RGB ``(H, W, 3)`` uint8, paths or encoded bytes), ``batch_size``
        per encoder pass; ``cache=False`` stores nothing."""
        ...

    def segment(
        self,
        image: "ImageLike | str | Embedding",
        prompts: Prompts,
        multimask_output: bool = False,
        namespace: str = "",
        cache: bool = True,
    ) -> sv.Detections:
        """Decode ``prompts`` on an image or one of ``embed_images``'s embeddings: row i of the
        result is prompt i, with ``mask`` ``(N, H, W)`` bool and ``data["sam_score"]`` ``(N,)``."""
        ...
