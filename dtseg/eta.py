"""How long one SAM encoder pass will take here: the encoder's FLOPs over a quick matmul probe.

The encoder always sees the same square input, so its work is a constant per model: each
official model's row states it (``OfficialModel.encoder_gflop``, a plugin family's rows too; a
row without it, a test-size or a custom architecture gets no estimate). A run says it before the
first (silent, seconds-long) encoder pass::

    >>> embed_estimate(engine)
    'the SAM encoder takes ~5 s per image on this cpu (vit_b, bfloat16: 972 GFLOP at 390 GFLOP/s)'
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Any

#: Encoders run at 1.2-2.8x their matmul floor (README's table): the estimate takes 2.
FLOOR_FACTOR = 2.0

PROBE_SIZE = 1024  # the probe multiplies two (PROBE_SIZE, PROBE_SIZE) matrices: 2.1 GFLOP


@functools.cache
def matmul_gflops(device: str, dtype: Any) -> float:
    """The matmul rate of ``device`` in ``dtype`` (a torch dtype), GFLOP/s: the median of five
    ``PROBE_SIZE``-square products after a warm-up (tens of milliseconds on a CPU; the median,
    not the best, so that a busy machine gets the rate it will give the encoder)."""
    import torch

    a = torch.randn(PROBE_SIZE, PROBE_SIZE, device=device).to(dtype)
    sync = torch.cuda.synchronize if a.is_cuda else (lambda: None)
    times = []
    with torch.inference_mode():
        for _ in range(6):
            sync()
            start = time.perf_counter()
            a @ a
            sync()
            times.append(time.perf_counter() - start)
    return 2 * PROBE_SIZE**3 / statistics.median(times[1:]) / 1e9


def encoder_gflop(model: str) -> float | None:
    """The encoder's GFLOP per image of the model named ``model``, as its checkpoint row states
    it; ``None`` for a model without one (test-size, custom, a row that states none, unknown)."""
    from dtseg.plugins import default_registry

    known = default_registry().models.get(model)
    return None if known is None or known.official is None else known.official.encoder_gflop


def embed_seconds(model: str, gflops_rate: float) -> float | None:
    """Seconds one encoder pass of ``model`` should take at ``gflops_rate`` (GFLOP/s); ``None``
    for a model without a known FLOP count (``encoder_gflop``)."""
    gflop = encoder_gflop(model)
    return None if gflop is None or gflops_rate <= 0 else gflop / gflops_rate * FLOOR_FACTOR


def embed_estimate(engine: Any) -> str | None:
    """One line on ``engine``'s encoder time here (model, device, precision, FLOPs and the probed
    rate), or ``None`` where it cannot be estimated (a model without ``encoder_gflop``, an engine
    without these attributes)."""
    model = getattr(engine, "model_name", None)
    device = getattr(engine, "device", None)
    loaded = getattr(engine, "model", None)  # the precision the encoder computes in (fp32 for a fallback)
    dtype = getattr(loaded, "compute", None) or getattr(loaded, "precision", None)
    if not isinstance(model, str) or device is None or dtype is None:
        return None
    gflop = encoder_gflop(model)
    if gflop is None:
        return None
    rate = matmul_gflops(str(device), dtype)
    seconds = embed_seconds(model, rate)
    if seconds is None:
        return None
    shown = f"{seconds:.0f}" if seconds >= 2 else f"{seconds:.1f}"
    precision = str(dtype).removeprefix("torch.")
    return (f"the SAM encoder takes ~{shown} s per image on this {device.type} ({model}, {precision}: "
            f"{gflop:.0f} GFLOP at {rate:.0f} GFLOP/s)")
