"""The benchmark scripts (``make bench``, not tests) stay runnable: shell syntax, Python imports."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_script_syntax():
    script = BENCH / "gpu.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "bench/models.py --device cuda" in script.read_text()


def test_models_bench_parses_its_options():
    result = subprocess.run([sys.executable, str(BENCH / "models.py"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--dtypes" in result.stdout and "--device" in result.stdout


@pytest.mark.slow
def test_models_bench_runs_on_the_tiny_model():
    """The whole table on the test-size SAM (real-size decoder): both precisions, embed and decode."""
    result = subprocess.run([sys.executable, str(BENCH / "models.py"), "--models", "tiny", "--quick"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| tiny ")]
    assert len(rows) == 2 + 4, result.stdout  # embed: fp32, bf16; decode: 2 cases x 2 precisions
    assert sum("20 boxes" in row for row in rows) == 2 and sum("1 point" in row for row in rows) == 2
    assert "matmul GFLOP/s: float32" in result.stdout
