#!/usr/bin/env bash
# Set up from scratch (see setup.sh) and run the main job on its embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python studies/spectrum_vs_accuracy.py "$@"
