"""Which precision a device runs natively, and what ``dtype: auto`` picks.

``auto`` is bf16 where the hardware has bf16 matrix units: CUDA devices that support bf16, and
CPUs with AMX (``amx_bf16``) or AVX512-BF16 (``avx512_bf16``); fp32 elsewhere (AVX2-only CPUs
emulate bf16 and run it slower than fp32; MPS). CPU features are read at run time from the
kernel's ``/proc/cpuinfo`` flags (``CPUINFO``), the same flags ``lscpu`` shows; torch's own
capability query only says ``AVX512``/``AVX2``, which does not tell bf16 support apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

#: Where the CPU's feature flags are read (a module attribute so tests can point it at a fake).
CPUINFO = Path("/proc/cpuinfo")
#: CPU flags meaning bf16 matrix multiplies run natively (and faster than fp32).
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
#: The precision names a config or the CLI accepts.
CHOICES = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as ``/proc/cpuinfo`` describes it (empty model and flags where it cannot be read)."""

    model: str
    flags: frozenset[str]

    @property
    def native_bf16(self) -> bool:
        return any(flag in self.flags for flag in NATIVE_BF16_FLAGS)

    @property
    def isa(self) -> str:
        """The vector/matrix extensions that matter here, e.g. ``AVX2 AVX-512 AVX512-BF16 AMX``."""
        names = (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"),
                 ("avx512_fp16", "AVX512-FP16"), ("amx_bf16", "AMX"))
        return " ".join(label for flag, label in names if flag in self.flags) or "unknown"


def cpu_info() -> CpuInfo:
    """Read ``CPUINFO`` (the first processor's ``model name`` and ``flags``)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return CpuInfo("", frozenset())
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:  # x86, arm
            flags = frozenset(value.split())
    return CpuInfo(model, flags)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matrix multiplies natively."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_info().native_bf16
    return False


def auto_dtype(device: torch.device) -> torch.dtype:
    """bf16 where ``device`` runs it natively, else fp32."""
    return torch.bfloat16 if native_bf16(device) else torch.float32


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``auto``, a name (``fp32``, ``bf16``, ``fp16``, or the long forms) or a torch dtype -> the
    torch dtype. Every precision runs on every device (on the CPU, low precision is autocast)."""
    if isinstance(dtype, torch.dtype):
        resolved = dtype if dtype in DTYPES.values() else None
    else:
        resolved = auto_dtype(device) if str(dtype) == "auto" else DTYPES.get(str(dtype))
    if resolved is None:
        raise ValueError(f"dtype: expected one of {', '.join(CHOICES)}, got {dtype!r}")
    return resolved


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``bfloat16``."""
    return str(dtype).removeprefix("torch.")


def describe(device: torch.device, dtype: torch.dtype, autocast: bool = True) -> str:
    """One line on the precision an engine runs in and why ``auto`` picks what it picks, e.g.
    ``bfloat16 (autocast, fp32 weights; auto on this cpu: bfloat16, AVX2 AVX-512 AVX512-BF16)``;
    ``autocast=False``: the encoder runs on its own low-precision weight copy."""
    low_cpu = device.type == "cpu" and dtype != torch.float32
    how = (" (autocast, fp32 weights)" if autocast else f" ({dtype_name(dtype)} encoder weights)") if low_cpu else ""
    auto = dtype_name(auto_dtype(device))
    why = f", {cpu_info().isa}" if device.type == "cpu" else ""
    return f"{dtype_name(dtype)}{how}; auto on this {device.type}: {auto}{why}"
