"""How many CPU threads torch uses: the CPUs this process may really use."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

__all__ = ["configure_threads", "cpu_quota"]


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``num_threads`` or, if ``None``, to the CPUs this process
    may really use (affinity mask and cgroup v2/v1 CPU quota). Returns the number set."""
    n = num_threads if num_threads is not None else cpu_quota()
    n = max(1, int(n))
    torch.set_num_threads(n)
    return n


def cpu_quota() -> int:
    """CPUs usable by this process: ``min(affinity mask, ceil(cgroup quota / period))``."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(n, math.ceil(quota)) if quota else n)


def _cgroup_quota() -> float | None:
    """CPU quota in CPUs from cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``; ``None`` if unlimited."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None
