#!/usr/bin/env bash
# The prepared GPU check (llmcodec/bench/gpu_check.py): on a machine with an NVIDIA GPU and
# PyTorch, the torch CUDA backend's exact tokens and a batch sweep in under 8 minutes, written
# to one folder (default results/gpu_check/<device>; OUT=/some/dir to choose).
#   bench/gpu_check.sh            # cuda when available, else cpu
#   bench/gpu_check.sh --quick    # a minute
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
# A machine without this checkout installed: install it without touching its torch.
"$PY" -c "import llmcodec.bench.gpu_check" 2>/dev/null || "$PY" -m pip install -q --no-deps -e .
"$PY" -c "import soxr, soundfile, safetensors, tokenizers" 2>/dev/null || \
  "$PY" -m pip install -q soxr soundfile safetensors tokenizers
DEV=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
exec timeout 480 "$PY" -m llmcodec.bench.gpu_check --out "${OUT:-results/gpu_check/$DEV}" "$@"
