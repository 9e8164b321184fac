"""Keep freed memory in the process heap (glibc), so large temporaries cost no page faults.

glibc's ``malloc`` serves blocks above ``M_MMAP_THRESHOLD`` (at most 32 MiB, adjusted at run
time) with a fresh ``mmap`` and returns them to the kernel on ``free``; the heap's top is given
back past ``M_TRIM_THRESHOLD``. Every large tensor the encoders and the decoder make is then
new memory: the kernel zero-fills it page by page on first touch. On the 2-core CPUs measured
(docs/encoder.md) an out-of-place add of two ``(8, 4096, 256)`` fp32 tensors took 20-28 ms that
way and 4.9 ms with the heap kept, a layer norm of the same 27 ms and 4.7 ms. PyTorch's CUDA
allocator keeps its blocks for the same reason; the price is that the resident size does not
shrink after a peak. ``DTSEG_KEEP_HEAP=0`` leaves glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: ``mallopt`` parameters (glibc ``malloc.h``).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap, and this much free heap top is kept (bytes; an int).
KEEP_BYTES = 1 << 30

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to ``KEEP_BYTES`` once per process.

    Returns whether they are set (``False`` on other C libraries, or with ``DTSEG_KEEP_HEAP=0``).
    """
    global _done
    if _done is None:
        _done = os.environ.get("DTSEG_KEEP_HEAP", "1") != "0" and _mallopt()
    return _done


def _mallopt() -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS, Windows: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
