#!/usr/bin/env bash
# Install what is needed (scripts/setup.sh) and run every test tier: unit, integration (real Ray), slow (a whole search).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not integration and not slow"` for the fast tier only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0 RAY_DATA_DISABLE_PROGRESS_BARS=1 WANDB_MODE=offline
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
