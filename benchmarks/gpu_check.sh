#!/usr/bin/env bash
# One prepared GPU check (issue #6): every benchmark on CUDA, < 8 minutes on one modern GPU, short tables.
# Usage (on the GPU machine, repository root, after bash scripts/setup.sh or an equivalent CUDA torch install):
#   bash benchmarks/gpu_check.sh 2>&1 | tee results/gpu_check.txt
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
echo "== sketch bandwidth vs copy bandwidth";        timeout 90  "$PY" benchmarks/sketch_bandwidth.py --device cuda
echo "== per-matrix frontier (quick shapes)";       timeout 120 "$PY" benchmarks/init_frontier.py --device cuda --quick --reps 3
echo "== whole-model init (SmolLM2 + 7B shapes)";   timeout 180 "$PY" benchmarks/whole_model_init.py --device cuda
echo "== adapter train step vs LoRA";               timeout 60  "$PY" benchmarks/adapter_step.py --device cuda --model smollm2-135m --batch 8 --seq 128
echo "== GPU tests";                                timeout 60  "$PY" -m pytest -q -m gpu tests/
