#!/usr/bin/env bash
# One-shot GPU measurement (issue 7): reference-style loop vs the project's fast step for
# Pixio-B/L/H at 256 px, bf16, batch sizes of BENCHMARKS.md. Needs only torch + timm.
#   bash benchmarks/gpu_pretrain_suite.sh            # writes $OUT/pretrain_step.json (or ./)
set -euo pipefail
out=${OUT:-.}
export PYTHONPATH=$(pwd):${PYTHONPATH:-}
for spec in "pixio_mae_vitb16 256" "pixio_mae_vitl16 128" "pixio_mae_vith16 64"; do
  set -- $spec
  python benchmarks/bench_train_step.py --model "$1" --batch "$2" --img-size 256 --bf16 \
    --variants reference,fast --steps 10 --repeats 3 --warmup 3 --json "$out/$1.json"
done
