"""Keep freed memory in the process heap (glibc), so large temporaries cost no page faults.

glibc's ``malloc`` serves blocks above ``M_MMAP_THRESHOLD`` (at most 32 MiB, adjusted at run
time) with a fresh ``mmap`` and returns them to the kernel on ``free``; the heap's top is given
back past ``M_TRIM_THRESHOLD``. Every large tensor the encoders and the decoder make is then
new memory: the kernel zero-fills it page by page on first touch. On the 2-core CPUs measured
(docs/encoder.md) an out-of-place add of two ``(8, 4096, 256)`` fp32 tensors took 20-28 ms that
way and 4.9 ms with the heap kept, a layer norm of the same 27 ms and 4.7 ms. PyTorch's CUDA
allocator keeps its blocks for the same reason; the price is that the resident size does not
shrink after a peak.

The thresholds are the whole process's: every other library's freed memory stays in the heap
too. So keeping it is a choice (``sam.keep_heap``): dtseg's own commands and server, whose
process is dtseg's, make it; a program that loads an engine through the library makes it with
``SamEngine.load(..., keep_heap=True)`` or for one block with ``kept_heap()``.
``release_freed_memory`` undoes it as far as glibc allows: both thresholds back to their initial
128 KiB (glibc's raising of the mmap threshold at run time stays off once a threshold was set)
and the free heap handed back to the kernel (``malloc_trim``). Free blocks left between live ones
serve later allocations, as under glibc's defaults; their pages are faulted in anew.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: ``mallopt`` parameters (glibc ``malloc.h``).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap, and this much free heap top is kept (bytes; an int).
KEEP_BYTES = 1 << 30
#: glibc's initial mmap and trim thresholds (bytes).
DEFAULT_BYTES = 128 << 10

_lock = threading.Lock()
_process = False  # kept for the rest of the process (keep_freed_memory)
_blocks = 0  # kept_heap blocks open, in any thread
_libc: Any = None


def heap_kept() -> bool:
    """Whether freed memory stays in this process's heap now."""
    with _lock:
        return _process or (_blocks > 0 and _glibc() is not None)


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to ``KEEP_BYTES`` for the whole process, until
    ``release_freed_memory``. Returns whether the heap is kept (``False`` on other C libraries)."""
    global _process
    with _lock:
        if not _process:  # an open kept_heap block has set the thresholds already
            _process = _glibc() is not None and (_blocks > 0 or _set_thresholds(KEEP_BYTES))
        return _process


def release_freed_memory() -> None:
    """Undo ``keep_freed_memory``: unless a ``kept_heap`` block is open, thresholds back to
    ``DEFAULT_BYTES`` and the free heap handed back to the kernel."""
    global _process
    with _lock:
        _process = False
        if _blocks == 0:
            _restore()


@contextmanager
def kept_heap() -> Iterator[bool]:
    """Keep freed memory while the block runs (yields whether it is kept); afterwards, unless
    ``keep_freed_memory`` holds it for the process or another block is still open, the
    thresholds go back to ``DEFAULT_BYTES`` and the free heap is handed back. The thresholds are
    still the process's: other threads' allocations are kept during the block too."""
    global _blocks
    with _lock:
        _blocks += 1
        kept = _process or (_set_thresholds(KEEP_BYTES) if _blocks == 1 else _glibc() is not None)
    try:
        yield kept
    finally:
        with _lock:
            _blocks -= 1
            if _blocks == 0 and not _process:
                _restore()


def _restore() -> None:
    libc = _glibc()
    if libc is not None and _set_thresholds(DEFAULT_BYTES):
        libc.malloc_trim(0)


def _set_thresholds(size: int) -> bool:
    libc = _glibc()
    return (libc is not None and bool(libc.mallopt(M_MMAP_THRESHOLD, size))
            and bool(libc.mallopt(M_TRIM_THRESHOLD, size)))


def _glibc() -> Any:
    """glibc with ``mallopt``/``malloc_trim`` typed, or ``None`` (musl, macOS, Windows)."""
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
            _libc = libc
        except (OSError, AttributeError):
            _libc = False
    return _libc or None
