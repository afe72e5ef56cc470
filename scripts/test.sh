#!/usr/bin/env bash
# Set up from scratch (see setup.sh) and run the default test suite (slow end-to-end tests excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q -m "not slow" "$@"
