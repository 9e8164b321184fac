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
