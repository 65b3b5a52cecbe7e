#!/usr/bin/env bash
# The prepared GPU work, in one call of at most 10 minutes: bash benchmarks/gpu_check.sh DATA_DIR [OUT]
#  1. benchmarks/gpu_paper_isbi.py: the paper's recipe at full width (64) on ISBI 2012, 3 min
#     of training, evaluated on the held-out slices -> OUT/studies/gpu_paper_isbi.json (C4's
#     GPU cell);
#  2. benchmarks/gpu_check.py: CUDA tests, resume, predict, timings -> OUT/gpu_check.{json,md}.
# Runs with the GPU machine's own python3 (its PyTorch has CUDA); the packages come from this
# checkout. OUT defaults to benchmarks/results. Exit status: non-zero if either part failed.
set -uo pipefail
cd "$(dirname "$0")/.."
data="${1:?usage: bash benchmarks/gpu_check.sh DATA_DIR [OUT]}"
out="${2:-benchmarks/results}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
timeout 270 python3 benchmarks/gpu_paper_isbi.py "$data" --minutes 3 --out "$out/studies"
paper=$?
timeout 300 python3 benchmarks/gpu_check.py "$data" --out "$out"
check=$?
echo "gpu_paper_isbi: exit $paper; gpu_check: exit $check"
[ "$paper" -eq 0 ] && [ "$check" -eq 0 ]
