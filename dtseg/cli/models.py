"""``dtseg models``: every model of every registered family, its size, and whether its checkpoint is here."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list the models (SAM, MobileSAM, SAM 2.1, plugins' families) and their checkpoints",
        description="List every model of every model family (dtseg's and installed plugins'): family, "
                    "parameters, input size, checkpoint file, whether it is in the checkpoint cache "
                    "($DTSEG_HOME/checkpoints), and the URL to fetch it from.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


def rows() -> list[dict[str, Any]]:
    """One dict per model of every registered family: the official models, then the test-size ones."""
    from dtseg.engine.checkpoints import checkpoint_dir
    from dtseg.plugins import default_registry

    out = []
    for name, (cls, _, m, _) in default_registry().models.items():
        row: dict[str, Any] = {"model": name, "family": cls.family, "params_m": None, "input": cls.input_length,
                               "checkpoint": None, "present": None, "path": None, "url": None, "sha256": None,
                               "size_mb": None, "licence": "test size: random weights only (checkpoint: random)"}
        if m is not None:
            path = checkpoint_dir() / m.filename
            row.update(params_m=m.params_m, checkpoint=m.filename, present=path.is_file(), path=str(path), url=m.url,
                       sha256=m.sha256, size_mb=m.size_mb, licence=m.licence)
        out.append(row)
    return out


def run(args: argparse.Namespace) -> int:
    table = rows()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    header = f"{'model':<16} {'family':<11} {'params':>7} {'input':>5}  {'checkpoint':<26} {'here':<4}  url"
    print(header)
    for r in table:
        params = f"{r['params_m']:.1f}M" if r["params_m"] else "-"
        here = "-" if r["present"] is None else "yes" if r["present"] else "no"
        print(f"{r['model']:<16} {r['family']:<11} {params:>7} {r['input']:>5}  {r['checkpoint'] or '(test size)':<26} "
              f"{here:<4}  {r['url'] or 'checkpoint: random only'}")
    from dtseg.engine.checkpoints import checkpoint_dir

    print(f"\ncheckpoint cache: {checkpoint_dir()}  (put downloaded files there, or pass --sam-checkpoint PATH)")
    print(precision_line())
    return 0


def precision_line() -> str:
    """What ``dtype: auto`` picks here, per device, the CPU features it read and how bf16 runs on
    this CPU (``precision.plan``: native, emulated or fallback)."""
    import torch

    from dtseg.runtime.device import select_device
    from dtseg.runtime.precision import auto_dtype, cpu_info, dtype_name, plan

    cpu, bf16 = cpu_info(), plan(torch.device("cpu"), torch.bfloat16).path
    how = "fallback: computed in float32" if bf16 == "fallback" else bf16
    picks = [f"cpu -> {dtype_name(auto_dtype(torch.device('cpu')))} ({cpu.model or 'CPU'}: {cpu.isa}; bf16 {how})"]
    device = select_device("auto")
    if device.type != "cpu":
        picks.append(f"{device} -> {dtype_name(auto_dtype(device))}")
    return "dtype auto: " + "; ".join(picks)
