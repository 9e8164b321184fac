#!/usr/bin/env bash
# The benchmark tables on a CUDA machine (bench/models.py, SAM 3 included, bench/paths.py --device cuda).
# Usage: bash bench/gpu.sh [extra bench/models.py options]
# Installs what it needs into .venv-gpu (reusing a CUDA torch already on the system, else
# pip's CUDA wheel), then prints the machine line, the matmul rate of each precision and the
# embed/decode tables for fp32, bf16 and fp16 (weights cast on CUDA; SDPA picks its flash kernels)
# of dtseg's fast passes; then bench/paths.py: fast passes vs reference modules per family on the
# GPU (same weights, time and mask IoU), the comparison that would justify running the fast
# passes there by default (sam.encoder/decoder: auto keeps the reference on CUDA until then).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    "$PY" -m pip install -q torch torchvision
fi
"$PY" -m pip install -q -e . 2>&1 | tail -n 3
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'; print(torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
MODELS="vit_b mobile_sam sam2.1_t sam2.1_s"
# each table runs even if the other ran out of time
timeout 360 "$PY" bench/models.py --device cuda --dtypes fp32 bf16 fp16 --models $MODELS --quick "$@" ||
    echo "bench/models.py stopped (status $?)"
# SAM 3 full size (860 M parameters): embed, 1 and 5 phrases, 1 click vs Meta's Sam3Processor
timeout 240 "$PY" bench/models.py --device cuda --dtypes fp32 bf16 --models sam3 --quick "$@" ||
    echo "bench/models.py (sam3) stopped (status $?)"
timeout 180 "$PY" bench/paths.py --device cuda --dtypes fp32 bf16 fp16 --models $MODELS --quick ||
    echo "bench/paths.py stopped (status $?)"
