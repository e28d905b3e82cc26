#!/usr/bin/env bash
# Idempotent set-up: Debian packages (TTS voices, codecs, real speech, noise) and the project venv.
# `--test` adds what only the tests need: a real single-node Slurm (slurm-wlm, munge) and headless
# Chromium to render the HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
  ffmpeg sox asterisk-core-sounds-en asterisk-core-sounds-en-g722 asterisk-moh-opsound-g722 openttd-opensfx)
if [ "${1:-}" = "--test" ]; then
  APT_PACKAGES+=(slurm-wlm munge chromium)
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -d .venv ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  .venv/bin/pip install -q --no-deps -r requirements-nodeps.txt  # see the file: their requirements clash with torch
  .venv/bin/pip install -q -e . --no-deps
  echo "$want" > "$stamp"
fi
