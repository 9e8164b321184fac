"""MobileSAM's inference encoder: TinyViT with its batch norms folded into the convolutions."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from dtseg import SamEngine
from dtseg.errors import RandomWeightsWarning


def test_batch_norms_folded_and_network_untouched():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        engine = SamEngine.load("tiny_mobile_sam", "random", device="cpu", seed=1)
    folded, original = engine.model.image_encoder, engine.model.net.image_encoder
    assert folded is not original
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in original.modules()) > 0  # checkpoints still load
    # non-trivial batch-norm statistics, so the fold has something to get right
    with torch.no_grad():
        for m in original.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    from dtseg.families.mobile_sam.family import fold_batch_norms

    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours, ref = fold_batch_norms(original)(x), original(x)
    assert ours.shape == ref.shape == (1, 256, 64, 64)
    assert (ours - ref).abs().max() <= 1e-4 * ref.abs().max()
