#!/usr/bin/env bash
# The lcam GPU check: run this in a bundle made by `cargo xtask gpu-bundle`, on a machine with an
# NVIDIA GPU (or without one: every GPU part then reports "skipped: no CUDA driver").
#
#   bash gpu-check.sh [--out DIR]
#
# Writes DIR/gpu-report.md and DIR/gpu-report.json (DIR: $OUT if set, else this folder) within
# 8 minutes (every command's timeout is cut to what is left of a 470 s budget). Each part
# reports pass / fail / skipped with its reason; one part crashing or timing out does not stop
# the others. The NVRTC and CUDA libraries are found from the python's torch install
# (site-packages/nvidia/cu13/lib); no paths need setting. PYTHON picks the interpreter.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for c in python3 python; do
    if command -v "$c" >/dev/null 2>&1; then py="$c"; break; fi
  done
fi
if [ -z "$py" ]; then
  echo "gpu-check: no python3 on PATH (set PYTHON)" >&2
  exit 2
fi
exec "$py" "$here/gpu_check.py" "$@"
