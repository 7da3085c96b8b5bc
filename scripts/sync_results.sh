#!/usr/bin/env bash
# Copies the evidence of a reproduction (every run's config.json and metrics.csv, and
# provenance.md — never checkpoints or logs) from a run directory into a results directory that
# is committed, then regenerates the report and figures there from those files alone.
#   scripts/sync_results.sh /work/runs/mini results/mini mini
# And back, to continue a reproduction elsewhere (complete runs are not retrained):
#   scripts/sync_results.sh results/mini /work/runs/mini
set -euo pipefail
from="${1:?from}"; to="${2:?to}"; preset="${3:-}"
mkdir -p "$to"
(cd "$from" && find . \( -name config.json -o -name metrics.csv -o -name provenance.md \) -type f -print0) |
  while IFS= read -r -d '' f; do
    mkdir -p "$to/$(dirname "$f")"
    cp -p "$from/$f" "$to/$f.partial" && mv "$to/$f.partial" "$to/$f"
  done
if [ -n "$preset" ]; then
  cargo xtask reproduce --preset "$preset" --report-only --out "$to"
fi
