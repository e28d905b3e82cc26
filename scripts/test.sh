#!/usr/bin/env bash
# Second README command: set up (Debian packages + venv), lint, and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --test
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
ruff check .
snakemake --lint --quiet all
exec python -m pytest "$@"
