"""The kept heap: a freed large block is reused without new page faults (counted by the kernel)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dtseg.engine import allocator

PROBE = """
import resource, torch
from dtseg.engine.allocator import keep_freed_memory
kept = keep_freed_memory()
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(64 << 20, dtype=torch.uint8); x.fill_(1); del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, min(faults[1:]))
"""


def faults_of_a_reused_64_mib_tensor(keep: str) -> tuple[bool, int]:
    """Whether the heap is kept, and the fewest page faults of re-making a freed 64 MiB tensor
    (rounds 2-6: glibc may place a block anew once or twice before it reuses one)."""
    env = {**os.environ, "DTSEG_KEEP_HEAP": keep}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_a_kept_heap_reuses_freed_pages():
    kept, faults = faults_of_a_reused_64_mib_tensor("1")
    assert kept and faults < 64  # its 16384 pages of 4 KiB were touched before
    kept, faults = faults_of_a_reused_64_mib_tensor("0")
    assert not kept and faults > 4096  # glibc's default: a fresh mmap each time, faulted in again


def test_engine_load_keeps_the_heap(engine):
    assert allocator.keep_freed_memory() is (os.environ.get("DTSEG_KEEP_HEAP", "1") != "0" and sys.platform.startswith("linux"))
