"""Torch's thread count from the CPUs this process may use."""

from __future__ import annotations

import os

import torch

from dtseg.runtime.threads import configure_threads


def test_configure_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        n = configure_threads()
        assert 1 <= n <= (os.cpu_count() or 1) and torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)
