#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py): bash benchmarks/gpu_check.sh DATA_DIR [OUT]
# Runs with the GPU machine's own python3 (its PyTorch has CUDA); unet_core comes from this
# checkout. Results: OUT/gpu_check.{json,md} (default benchmarks/results).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?usage: bash benchmarks/gpu_check.sh DATA_DIR [OUT]}"
out="${2:-benchmarks/results}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
timeout 300 python3 benchmarks/gpu_check.py "$data" --out "$out"
