#!/usr/bin/env bash
# First README command: set up (Debian packages + venv) and run the default workflow.
# Extra arguments go to snakemake, e.g. `bash scripts/run.sh --cores 2` or `-n`. Unless they set the cores
# (--cores/-c, --jobs/-j, or a --profile that sets them), `--cores all` is added: every core of this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cores=(--cores all)
for arg in "$@"; do
  case "$arg" in
    --cores | --cores=* | -c | -c[0-9]* | --jobs | --jobs=* | -j | -j[0-9]* | --profile | --profile=*) cores=() ;;
  esac
done
exec snakemake "${cores[@]}" "$@" all
