"""dtseg: detect-then-segment with a cached Segment Anything engine."""

from dtseg.engine import Embedding, SamEngine, SegmentResult
from dtseg.errors import (CheckpointError, CheckpointNotFoundError, ChecksumMismatchError, ConfigError, DtsegError,
                          ImageDecodeError, ImageNotEmbeddedError, InputError, PromptError, RandomWeightsWarning)
from dtseg.prompts import Prompts

__version__ = "0.1.0"
__all__ = [
    "CheckpointError", "CheckpointNotFoundError", "ChecksumMismatchError", "ConfigError", "DtsegError",
    "Embedding", "ImageDecodeError", "ImageNotEmbeddedError", "InputError", "PromptError", "Prompts",
    "RandomWeightsWarning", "SamEngine", "SegmentResult", "__version__",
]
