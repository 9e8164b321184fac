"""Configuration: YAML files -> validated pydantic models. Unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from dtseg.errors import ConfigError


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


class SpecConfig(StrictModel):
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: list[int]


class SamConfig(StrictModel):
    """The ``sam:`` section: which model, which weights, where it runs."""

    model: Union[Literal["vit_h", "vit_l", "vit_b", "tiny"], SpecConfig] = "vit_b"
    checkpoint: str | None = None  # a path, "random" (tests only), or None: cache, then download
    device: str = "auto"
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    cache_mb: int = 1024
    cache_fp16: bool = False
    encoder: Literal["fast", "reference"] = "reference"
    decoder: Literal["fast", "reference"] = "reference"
    encoder_int8: bool = False

    def build_engine(self) -> "SamEngine":  # noqa: F821
        from dtseg.engine import SamEngine

        model = self.model if isinstance(self.model, str) else self.model.model_dump()
        return SamEngine.load(model, self.checkpoint, device=self.device, dtype=self.dtype,
                              cache_bytes=self.cache_mb << 20, cache_fp16=self.cache_fp16, encoder=self.encoder,
                              decoder=self.decoder, encoder_int8=self.encoder_int8)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def validate(model: type[StrictModel], data: Any, source: str) -> Any:
    """``model.model_validate(data)`` with errors that name the source, the key and what was expected."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: invalid configuration"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}" + (f" (got {err['input']!r})" if err["type"] != "missing" else ""))
        raise ConfigError("\n".join(lines)) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set a.b.c=value`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. sam.device=cpu")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return data
