"""The benchmark scripts (``make bench``, not tests) stay runnable: shell syntax, Python imports."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dtseg.runtime.precision import plan

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_script_syntax():
    script = BENCH / "gpu.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "bench/models.py --device cuda" in script.read_text()
    assert "bench/paths.py --device cuda" in script.read_text()  # fast vs reference on the GPU
    assert "--models sam3" in script.read_text()  # full-size SAM 3 runs there, not on a CPU


def test_models_bench_parses_its_options():
    result = subprocess.run([sys.executable, str(BENCH / "models.py"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--dtypes" in result.stdout and "--device" in result.stdout


@pytest.mark.slow
def test_models_bench_runs_on_the_tiny_model():
    """The whole table on the test-size SAM (real-size decoder), in its smoke mode (one run of
    each, a small image, 4 boxes): both precisions, embed and decode. A bf16 row names the path
    this CPU takes (``precision.plan``); without oneDNN's bf16 kernels no bf16 rate is measured."""
    result = subprocess.run([sys.executable, str(BENCH / "models.py"), "--models", "tiny", "--smoke"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| tiny ")]
    assert len(rows) == 2 + 4, result.stdout  # embed: fp32, bf16; decode: 2 cases x 2 precisions
    assert sum("4 boxes, one call" in row for row in rows) == 2 and sum("1 point" in row for row in rows) == 2
    assert "matmul GFLOP/s: float32" in result.stdout and "SMOKE RUN" in result.stdout
    path = plan(torch.device("cpu"), torch.bfloat16).path
    bf16 = {"native": "| bfloat16 ", "emulated": "| bfloat16 (emulated) ",
            "fallback": "| bfloat16 (float32 compute) "}[path]
    assert sum(bf16 in row for row in rows) == 3, result.stdout
    rates = result.stdout.splitlines()[0].partition("matmul GFLOP/s: ")[2]
    assert (re.match(r"float32 \d+, bfloat16 \d+;", rates) is not None) is (path != "fallback"), rates


@pytest.mark.parametrize(("script", "option"), [("paths.py", "--device"), ("heap.py", "--rounds")])
def test_bench_scripts_parse_their_options(script, option):
    result = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert option in result.stdout


@pytest.mark.slow
def test_paths_bench_compares_fast_and_reference_on_the_tiny_model():
    """A row per precision asked (fp32 here: the other precisions run the same code), in its smoke
    mode (each call once, a small image, 4 boxes): both sides timed, masks compared, a switch verdict."""
    result = subprocess.run([sys.executable, str(BENCH / "paths.py"), "--models", "tiny", "--dtypes", "fp32",
                             "--smoke"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| tiny ")]
    assert [row[1].strip() for row in rows] == ["float32"], result.stdout
    for row in rows:
        assert float(row[4]) > 0 and float(row[7]) > 0 and float(row[10]) > 0  # fast/ref of each call
        assert 0.9 <= float(row[11]) <= 1 and 0.9 <= float(row[12]) <= 1  # the same weights: masks agree
        assert row[13].strip() in ("yes", "no")
    assert "SMOKE RUN" in result.stdout and "| 4 boxes fast ms " in result.stdout


@pytest.mark.heavy
def test_models_bench_runs_sam3_rows_on_the_tiny_model():
    """A SAM 3 model gets its own table against Meta's ``Sam3Processor`` (smoke mode, fp32: the
    other precisions run the same code): embed, 1 phrase, 5 phrases, 1 click, each with its
    FLOPs, floor and ratio; the fp32 click masks agree with themselves."""
    result = subprocess.run([sys.executable, str(BENCH / "models.py"), "--models", "tiny_sam3", "--dtypes", "fp32",
                             "--smoke"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| tiny_sam3 ")]
    assert [row[2].strip() for row in rows] == ["embed", "1 phrase", "5 phrases", "1 click, multimask"], result.stdout
    for row in rows:
        assert float(row[3]) > 0 and float(row[4]) > 0 and float(row[6]) > 0 and float(row[8]) > 0
    assert float(rows[2][6]) > float(rows[1][6])  # five phrases are more work than one
    assert rows[3][9].strip() == "1.0000"
    assert "Sam3Processor" in result.stdout and "## embed" not in result.stdout  # no SAM rows asked
