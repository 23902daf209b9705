#!/usr/bin/env bash
# One-command GPU check (issue 26): training samples/s and peak memory at the autopet_paper size,
# full-cascade inference time and memory at 2 mm, MFU. About 3 min eager + up to 5 min compiled on
# one H100-class GPU. Figures go to benchmarks/results/gpu_check.{json,md} (and to $OUT if set).
#
#     bash benchmarks/gpu_check.sh            # PYTHON=/path/to/venv/bin/python to pick the interpreter
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch, diffusers, accelerate; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'diffusers', diffusers.__version__, 'accelerate', accelerate.__version__, 'gpu', torch.cuda.is_available())"
status=0
# eager first: its figures are saved even if compilation later runs out of time
timeout 240 "$PY" benchmarks/bench_gpu.py --device cuda --steps 10 --warmup 3 --tag cuda_eager "$@" || status=$?
timeout 300 "$PY" benchmarks/bench_gpu.py --device cuda --steps 10 --warmup 3 --compile --skip sr \
    --tag cuda_compiled "$@" || status=$?
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then cp benchmarks/results/gpu_check.* "$OUT"/ 2>/dev/null || true; fi
exit $status
