"""Which precision a device runs natively, what ``dtype: auto`` picks, and how an engine runs
the precision asked for (``plan``).

``auto`` is bf16 where the hardware has bf16 matrix units: CUDA devices that support bf16, and
CPUs with AMX (``amx_bf16``) or AVX512-BF16 (``avx512_bf16``) whose oneDNN bf16 kernels run
(``fused.kernel_runs``); fp32 elsewhere (AVX2-only CPUs; MPS). CPU features are read at run
time from the kernel's ``/proc/cpuinfo`` flags (``CPUINFO``), the same flags ``lscpu`` shows;
torch's own capability query only says ``AVX512``/``AVX2``, which does not tell bf16 support apart.

Every precision is accepted on every device. On the CPU a low precision runs one of three ways
(``Plan.path``): ``native`` (oneDNN's kernels on the CPU's own bf16/fp16 arithmetic),
``emulated`` (oneDNN's kernels without that arithmetic: converted, slower than fp32; bf16 on
AVX-512 without AVX512-BF16) or ``fallback`` (oneDNN has no kernel in that precision on this
CPU, e.g. bf16 on AVX2: the encoder and decoder compute in fp32, the features are rounded to
the precision asked for, so they are cached and exchanged as such).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

#: Where the CPU's feature flags are read (a module attribute so tests can point it at a fake).
CPUINFO = Path("/proc/cpuinfo")
#: CPU flags meaning bf16 matrix multiplies run natively (and faster than fp32).
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: CPU flags of each low precision's arithmetic (without them oneDNN converts: emulated).
NATIVE_FLAGS = {torch.bfloat16: NATIVE_BF16_FLAGS, torch.float16: ("amx_fp16", "avx512_fp16")}
#: What oneDNN's kernels need in each low precision (named where a CPU lacks it).
ONEDNN_NEEDS = {torch.bfloat16: "AVX-512 (BW, VL, DQ), AVX-NE-CONVERT or AMX",
                torch.float16: "AVX512-FP16, AVX-NE-CONVERT or AMX-FP16"}

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
        return self.native(torch.bfloat16)

    def native(self, dtype: torch.dtype) -> bool:
        """Whether the CPU has matrix arithmetic in ``dtype`` (fp32: always)."""
        return dtype == torch.float32 or any(flag in self.flags for flag in NATIVE_FLAGS.get(dtype, ()))

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
    model, flags = "", frozenset[str]()
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
        return cpu_info().native_bf16 and onednn_kernels(torch.bfloat16)
    return False


def onednn_kernels(dtype: torch.dtype) -> bool:
    """Whether oneDNN runs the encoders' linear and convolution kernels in ``dtype`` on this CPU
    (probed once per process, ``fused.kernel_runs``)."""
    from dtseg.nn.fused import KERNELS, kernel_runs

    return all(kernel_runs(kernel, dtype) for kernel in KERNELS)


@dataclass(frozen=True)
class Plan:
    """How an engine runs the precision asked for on its device.

    ``dtype``: the precision asked for, which the features are kept in; ``compute``: what the
    encoder and mask decoder compute in; ``path``: ``native``, ``emulated`` or ``fallback``
    (module docstring); ``note``: why, for a fallback or an emulation, else ``""``.
    """

    dtype: torch.dtype
    compute: torch.dtype
    path: Literal["native", "emulated", "fallback"]
    note: str = ""


def plan(device: torch.device, dtype: torch.dtype) -> Plan:
    """The ``Plan`` for ``dtype`` on ``device``: on the CPU from ``onednn_kernels`` (a probe, so
    the answer holds for the CPU and the torch build actually running) and the CPU's flags."""
    if dtype == torch.float32:
        return Plan(dtype, dtype, "native")
    name = dtype_name(dtype)
    if (device.type == "cuda" and dtype == torch.bfloat16
            and not torch.cuda.is_bf16_supported(including_emulation=False)):
        return Plan(dtype, dtype, "emulated", f"this GPU has no {name} arithmetic")
    if device.type != "cpu":
        return Plan(dtype, dtype, "native")
    cpu = cpu_info()
    if not onednn_kernels(dtype):
        limit = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
        isa = f"{cpu.isa}, oneDNN limited to {limit}" if limit else cpu.isa
        return Plan(dtype, torch.float32, "fallback",
                    f"no oneDNN {name} kernels on this CPU ({isa}; they need {ONEDNN_NEEDS[dtype]})")
    if not cpu.native(dtype):
        return Plan(dtype, dtype, "emulated", f"no {name} arithmetic on this CPU ({cpu.isa}): slower than float32")
    return Plan(dtype, dtype, "native")


def auto_dtype(device: torch.device) -> torch.dtype:
    """bf16 where ``device`` runs it natively, else fp32."""
    return torch.bfloat16 if native_bf16(device) else torch.float32


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``auto``, a name (``fp32``, ``bf16``, ``fp16``, or the long forms) or a torch dtype -> the
    torch dtype. Every precision is accepted on every device (``plan`` says how it runs)."""
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


def describe(device: torch.device, how: Plan, autocast: bool = True) -> str:
    """One line on the precision an engine runs in, which path (``Plan``) and why ``auto`` picks
    what it picks, e.g. ``bfloat16 (native; autocast, fp32 weights); auto on this cpu: bfloat16,
    AVX2 AVX-512 AVX512-BF16``; ``autocast=False``: the encoder runs on its own low-precision
    weight copy. A fallback reads ``bfloat16 features, computed in float32 (fallback: no oneDNN
    bfloat16 kernels on this CPU (AVX2; they need ...))``."""
    name = dtype_name(how.dtype)
    auto = dtype_name(auto_dtype(device))
    why = f", {cpu_info().isa}" if device.type == "cpu" else ""
    tail = f"; auto on this {device.type}: {auto}{why}"
    if how.path == "fallback":
        return f"{name} features, computed in {dtype_name(how.compute)} (fallback: {how.note}){tail}"
    if how.dtype == torch.float32:
        return f"{name}{tail}"
    path = f"emulated: {how.note}" if how.path == "emulated" else how.path
    weights = "" if device.type != "cpu" else ("; autocast, fp32 weights" if autocast else f"; {name} encoder weights")
    return f"{name} ({path}{weights}){tail}"
