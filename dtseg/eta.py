"""How long one SAM encoder pass will take here: the encoder's FLOPs over a quick matmul probe.

The encoder always sees a 1024 x 1024 input, so its work is a constant per model. A run says
it before the first (silent, seconds-long) encoder pass::

    >>> embed_estimate(engine)
    'the SAM encoder takes ~5 s per image on this cpu (vit_b, bfloat16: 972 GFLOP at 390 GFLOP/s)'
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Any

#: Encoder GFLOP per image at 1024 x 1024 (torch's FlopCounterMode on each model's forward,
#: attention included, as ``bench/models.py`` counts its floors).
ENCODER_GFLOP = {"vit_b": 972.1, "vit_l": 2985.7, "vit_h": 5961.1, "mobile_sam": 77.5, "sam2.1_t": 292.4,
                 "sam2.1_s": 360.1, "sam2.1_b+": 646.8, "sam2.1_l": 1822.8}

#: Encoders run at 1.2-2.8x their matmul floor (README's table): the estimate takes 2.
FLOOR_FACTOR = 2.0

PROBE_SIZE = 1024  # the probe multiplies two (PROBE_SIZE, PROBE_SIZE) matrices: 2.1 GFLOP


@functools.lru_cache(maxsize=None)
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


def embed_seconds(model: str, gflops_rate: float) -> float | None:
    """Seconds one encoder pass of ``model`` should take at ``gflops_rate`` (GFLOP/s); ``None``
    for a model without a known FLOP count (test-size or custom architectures)."""
    gflop = ENCODER_GFLOP.get(model)
    return None if gflop is None or gflops_rate <= 0 else gflop / gflops_rate * FLOOR_FACTOR


def embed_estimate(engine: Any) -> str | None:
    """One line on ``engine``'s encoder time here (model, device, precision, FLOPs and the probed
    rate), or ``None`` where it cannot be estimated (an unknown model, an engine without these
    attributes)."""
    model = getattr(engine, "model_name", None)
    device = getattr(engine, "device", None)
    family = getattr(engine, "model", None)  # the precision the encoder computes in (fp32 for a fallback)
    dtype = getattr(family, "compute", None) or getattr(family, "precision", None)
    if model not in ENCODER_GFLOP or device is None or dtype is None:
        return None
    rate = matmul_gflops(str(device), dtype)
    seconds = embed_seconds(model, rate)
    if seconds is None:
        return None
    shown = f"{seconds:.0f}" if seconds >= 2 else f"{seconds:.1f}"
    precision = str(dtype).removeprefix("torch.")
    return (f"the SAM encoder takes ~{shown} s per image on this {device.type} ({model}, {precision}: "
            f"{ENCODER_GFLOP[model]:.0f} GFLOP at {rate:.0f} GFLOP/s)")
