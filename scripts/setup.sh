#!/usr/bin/env bash
# Create .venv and install anrl-ray with the CPU-tested pins. Idempotent: a second run is fast.
# Usage: bash scripts/setup.sh        (GPU nodes: install your CUDA torch first, then `pip install -e .`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.anrl-installed
want=$(cat requirements/cpu.txt requirements/constraints.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build of another version.
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1" -c requirements/constraints.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/cpu.txt -c requirements/constraints.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi
