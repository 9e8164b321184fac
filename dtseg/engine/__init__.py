"""The cached SAM engine: models, embedding cache, transforms, decode, postprocess."""

from dtseg.engine.engine import Embedding, SamEngine, SegmentResult

__all__ = ["Embedding", "SamEngine", "SegmentResult"]
