#!/usr/bin/env bash
# First README command: set up (Debian packages + venv) and run the default workflow.
# Extra arguments go to snakemake, e.g. `bash scripts/run.sh --cores 2` or `-n`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ $# -eq 0 ]; then set -- --cores 8; fi
exec snakemake "$@" all
