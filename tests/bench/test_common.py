"""``bench/common.py``: the helpers the benchmark tables are built from."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from common import ops_alone


def test_ops_alone_times_each_kernel_once_and_skips_views():
    a = torch.randn(64, 64)

    def work():
        b = a @ a  # one kernel
        b.t().reshape(-1)[:10]  # views and a copying reshape: one kernel (the copy)
        return b.contiguous().softmax(-1)  # contiguous of a contiguous tensor is no kernel; softmax is one

    seconds, ops = ops_alone(work)
    assert ops == 3
    assert seconds > 0


def test_ops_alone_replays_in_place_ops_on_a_copy():
    x = torch.zeros(8)

    def work():
        x.add_(1)

    ops_alone(work, repeat=5)
    assert torch.equal(x, torch.ones(8))  # added once, by the call itself
    assert ops_alone(lambda: x.view(2, 4)) == (0.0, 0)
