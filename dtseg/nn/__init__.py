"""Network pieces the families share: the fast batched mask decoder and the CPU kernels the fast encoders use."""

from typing import Any

#: A module of a reference network (segment_anything, mobile_sam, sam2, sam3: libraries without
#: type information) whose parts and settings the fast paths read by name. ``nn.Module.__getattr__``
#: types each such read ``Tensor | Module``, so the reference modules are taken as ``Any`` here,
#: once, where they enter our code.
RefModule = Any

__all__ = ["RefModule"]
