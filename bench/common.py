"""Shared benchmark helpers: min-of-N timing and a plain-text table."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch.utils.flop_counter import FlopCounterMode


def best_of(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Minimum wall time of ``fn()`` over ``repeat`` runs, in seconds (the least noisy estimate)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def flop_counter() -> FlopCounterMode:
    """``FlopCounterMode`` that also counts the CPU flash-attention kernel: torch registers a
    formula for the CUDA/meta SDPA ops only, so on the CPU every ``scaled_dot_product_attention``
    counted 0 (vit_b: 712 instead of 942 GFLOP at 1024 px)."""
    from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op not in _counted:
        register_flop_formula(op)(lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v))
        _counted.add(op)
    return FlopCounterMode(display=False)


_counted: set = set()


def ops_alone(fn: Callable[[], object], repeat: int = 5) -> tuple[float, int]:
    """The time of ``fn``'s kernels without what lies between them: each aten op one call of
    ``fn`` dispatches is run again on its own, right after it ran (inputs warm in cache), and
    its best of ``repeat`` runs is summed, in seconds; with the number of ops. Ops that write to
    an input get a copy of it. Compared with ``fn``'s own time it says how much is overhead
    (Python, dispatch, cold caches) and how much is kernels that only fusing could shorten."""
    from torch.utils._python_dispatch import TorchDispatchMode

    total, count = 0.0, 0

    class Replay(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
            nonlocal total, count
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if not func._schema.is_mutable and _aliases(out, args):
                return out  # a view: no kernel
            params = func._schema.arguments
            written = {a.name for a in params if a.alias_info is not None and a.alias_info.is_write}

            def copy(name: str, value: object) -> object:
                return value.clone() if name in written and isinstance(value, torch.Tensor) else value

            replay_args = [copy(param.name, a) for param, a in zip(params, args, strict=False)]  # args: a prefix
            replay_kwargs = {k: copy(k, v) for k, v in kwargs.items()}
            total += best_of(lambda: func(*replay_args, **replay_kwargs), repeat, warmup=0)
            count += 1
            return out

    with Replay():
        fn()
    return total, count


def _aliases(out: object, args: Sequence[object]) -> bool:
    """Whether ``out`` (a tensor) shares storage with a tensor in ``args``: a view, or a no-op
    such as ``contiguous`` of a contiguous tensor."""
    if not isinstance(out, torch.Tensor):
        return False
    ptr = out.untyped_storage().data_ptr()
    return any(isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() == ptr for a in args)


def machine() -> str:
    """The machine line: CPU model, usable CPUs, AVX2 / AVX-512 / AVX512-BF16 / AMX, GPU, torch."""
    from dtseg.runtime.precision import cpu_info

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = cpu_info()
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu.model or platform.processor() or platform.machine()}, {cpus} CPUs ({cpu.isa}){gpu}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print ``rows`` under ``header`` as an aligned text table."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n## {title}\n")
    for n, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)
