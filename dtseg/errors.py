"""Every error dtseg raises on purpose. Input mistakes are ``ValueError`` subclasses."""

from __future__ import annotations


class DtsegError(Exception):
    """Base class of all dtseg errors."""


class InputError(DtsegError, ValueError):
    """A caller passed something malformed. ``field`` names the offending argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ImageDecodeError(InputError):
    """Bytes or a file that are not a readable image."""


class PromptError(InputError):
    """Points, labels, boxes or mask input with the wrong shape or values."""


class ImageNotEmbeddedError(DtsegError, LookupError):
    """``segment_image`` got an ``image_id`` that is not in the cache and no image."""

    code = "image_not_embedded"

    def __init__(self, image_id: str) -> None:
        super().__init__(
            f"image_id {image_id!r} is not embedded (never embedded, or evicted from the "
            "cache): send the image again with this image_id"
        )
        self.image_id = image_id


class EmbeddingMismatchError(InputError):
    """An ``Embedding`` made by another model than the engine's: it cannot be decoded here."""

    def __init__(self, made_by: str, engine_model: str) -> None:
        super().__init__("embedding", f"made by model {made_by!r}, but this engine runs {engine_model!r}: "
                                      "embed the image with this engine")
        self.made_by, self.engine_model = made_by, engine_model


class CheckpointError(DtsegError):
    """A checkpoint that cannot be found, fetched, verified or loaded."""


#: How a user spells an option where an error is shown: ``python`` (keyword arguments), ``cli``
#: (command-line flags), ``config`` (YAML keys).
SPELLINGS = ("python", "cli", "config")


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint on disk and no way to download it.

    ``hints`` maps a spelling (``SPELLINGS``) to the advice that follows ``problem`` (what to
    pass, how to get random weights) in that spelling; ``str()`` is the Python one and
    ``spelled("cli")`` the text a command prints.
    """

    def __init__(self, problem: str, hints: dict[str, str] | None = None) -> None:
        self.problem = problem
        self.hints = dict(hints or {})
        super().__init__(self.spelled("python"))

    def spelled(self, spelling: str) -> str:
        """The message with the advice in ``spelling`` (the Python one where there is no such hint)."""
        return self.problem + self.hints.get(spelling, self.hints.get("python", ""))


class ChecksumMismatchError(CheckpointError):
    """A downloaded or cached checkpoint whose sha256 is not the official one."""


class ConfigError(DtsegError, ValueError):
    """A configuration file or dict that does not validate."""


class RandomWeightsWarning(UserWarning):
    """Emitted whenever SAM is built with random weights (tests, benchmarks, ``--allow-random``)."""


class CacheTierError(DtsegError):
    """A configured cache tier (Redis, a cache folder) that cannot be used when the engine starts."""
