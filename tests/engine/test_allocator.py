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
x = torch.empty(64 << 20, dtype=torch.uint8); x.fill_(1); del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
y = torch.empty(64 << 20, dtype=torch.uint8); y.fill_(1)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_of_a_second_64_mib_tensor(keep: str) -> tuple[bool, int]:
    env = {**os.environ, "DTSEG_KEEP_HEAP": keep}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_a_kept_heap_reuses_freed_pages():
    kept, faults = faults_of_a_second_64_mib_tensor("1")
    assert kept and faults < 64  # 16384 pages of 4 KiB were already touched once
    kept, faults = faults_of_a_second_64_mib_tensor("0")
    assert not kept and faults > 4096  # glibc's default: a fresh mmap, faulted in again


def test_engine_load_keeps_the_heap(engine):
    assert allocator.keep_freed_memory() is (os.environ.get("DTSEG_KEEP_HEAP", "1") != "0" and sys.platform.startswith("linux"))
