"""The kept heap: off for a program using the library unless it asks, on in dtseg's own commands,
reused pages while kept (counted by the kernel), memory handed back when released."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from dtseg.config import SamConfig
from dtseg.errors import RandomWeightsWarning
from dtseg.runtime import allocator

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's; RSS from /proc")

#: An embedding application: an engine loaded through the library, then 512 MiB made and freed
#: elsewhere; resident sizes in MiB over the size after the engine's first decode.
RSS_PROBE = """
import json, os, sys, warnings
import numpy as np
from dtseg import SamEngine
from dtseg.runtime import allocator

warnings.simplefilter("ignore")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
engine = SamEngine.load("tiny", "random", device="cpu", **json.loads(sys.argv[1]))
engine.segment_image(image=np.zeros((64, 64, 3), np.uint8), boxes=[4, 4, 40, 40])
base = rss()
array = np.ones(512 << 20, np.uint8)
peak = rss() - base
del array
kept, after_free = allocator.heap_kept(), rss() - base
allocator.release_freed_memory()
print(json.dumps({"kept": kept, "peak": peak, "after_free": after_free, "after_release": rss() - base,
                  "kept_after_release": allocator.heap_kept()}))
"""

#: Page faults of making a 64 MiB tensor again and again, inside a ``kept_heap`` block (the fewest
#: of rounds 2-6: glibc may place a block anew once or twice before it reuses one) and right after.
FAULT_PROBE = """
import resource, torch
from dtseg.runtime.allocator import heap_kept, kept_heap

def faults():
    counts = []
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.empty(64 << 20, dtype=torch.uint8); x.fill_(1); del x
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return counts

with kept_heap() as kept:
    inside = faults()
print(kept, min(inside[1:]), heap_kept(), faults()[0])
"""


def run_probe(probe: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@linux_only
def test_a_library_engine_leaves_the_heap_alone():
    rss = json.loads(run_probe(RSS_PROBE, "{}"))
    assert not rss["kept"]
    assert rss["peak"] > 450  # the array was resident
    assert rss["after_free"] < 64  # and went back to the kernel with it


@linux_only
def test_keep_heap_keeps_freed_memory_until_released():
    rss = json.loads(run_probe(RSS_PROBE, '{"keep_heap": true}'))
    assert rss["kept"] and rss["peak"] > 256  # (part of the array may reuse pages kept before it)
    assert rss["after_free"] > rss["peak"] - 16  # the opt-in is what keeps it
    assert not rss["kept_after_release"] and rss["after_release"] < 64  # handed back by release


@linux_only
def test_a_kept_heap_block_reuses_freed_pages_and_ends():
    kept, inside, kept_after, first_after = run_probe(FAULT_PROBE).split()
    assert kept == "True" and int(inside) < 64  # its 16384 pages of 4 KiB were touched before
    assert kept_after == "False" and int(first_after) > 4096  # the block's end handed the pages back


@pytest.fixture
def released() -> Iterator[None]:
    """This test process's heap released before and after (the setting is the process's)."""
    allocator.release_freed_memory()
    yield
    allocator.release_freed_memory()


@linux_only
@pytest.mark.parametrize(("key", "command", "kept"), [(None, False, False), (None, True, True),
                                                      (False, True, False), (True, False, True)])
def test_sam_keep_heap_and_what_null_means(released: None, key: bool | None, command: bool, kept: bool):
    """``sam.keep_heap: null`` is on only where the caller is one of dtseg's commands."""
    config: dict[str, Any] = {"model": "tiny", "checkpoint": "random", "device": "cpu", "keep_heap": key}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        engine = SamConfig(**config).build_engine(keep_heap_default=command)
    assert engine.info()["keep_heap"] is kept is allocator.heap_kept()


@linux_only
def test_dtseg_segment_keeps_the_heap(released: None, tiny_sam_config: dict[str, Any], tmp_path, capsys):
    import yaml

    from dtseg.cli import build_parser, common

    config = tmp_path / "p.yaml"
    prompts = [{"points": {"objects": [{"points": [[5, 5]]}]}}]
    config.write_text(yaml.safe_dump({"sam": tiny_sam_config, "prompts": prompts}))
    pipeline = common.build_pipeline(build_parser().parse_args(["segment", "x.jpg", "-c", str(config)]))
    assert pipeline.engine.info()["keep_heap"] is True
    allocator.release_freed_memory()
    pipeline = common.build_pipeline(build_parser().parse_args(["segment", "x.jpg", "-c", str(config),
                                                          "--set", "sam.keep_heap=false"]))
    assert pipeline.engine.info()["keep_heap"] is False


@linux_only
@pytest.mark.parametrize("factory", [True, False])
def test_dtseg_serve_workers_keep_the_heap(released: None, tiny_sam_config: dict[str, Any], monkeypatch, factory):
    """``dtseg serve --workers N``'s app factory keeps it; ``app_from_config`` from a program does not."""
    from dtseg.server import ServeConfig, app_from_config
    from dtseg.server.factory import CONFIG_ENV, build

    monkeypatch.setenv(CONFIG_ENV, json.dumps({"sam": tiny_sam_config}))
    app = build() if factory else app_from_config(ServeConfig(sam=tiny_sam_config))
    assert app.state.services.engine.info()["keep_heap"] is factory


def test_nested_kept_heap_blocks(released: None):
    with allocator.kept_heap() as kept:
        assert allocator.heap_kept() is kept
        with allocator.kept_heap():  # nested: the outer block still holds it
            pass
        assert allocator.heap_kept() is kept
    assert not allocator.heap_kept()
