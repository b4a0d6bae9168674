#!/usr/bin/env bash
# One-shot GPU measurement for issue 7; needs only torch + timm (no hydra, mujoco, lerobot).
# Every part writes JSON to $OUT (default ./gpu_results) as soon as it has it, in priority order.
#   PARTS=core  correctness on the GPU (benchmarks/gpu_checks.py: fast step vs eager fp32 loss and
#               gradients, no host sync in the step, non-finite skip), then
#               Pixio-B/16, L/16, H/16 at 256 px, bf16, BENCHMARKS.md's batches: the reference loop
#               vs the project's step (compiled blocks, fused AdamW, no host sync), with fp32 master
#               weights under autocast and with FSDP2's bf16 compute copies    (~6 min on an H100/H200)
#   PARTS=big   torch.profiler summary of the B/16 step; Pixio-1B/16 and 5B/16 on one GPU (FSDP2 bf16
#               weights + activation checkpointing, + CPU offload under 100 GB)          (~4 min)
#   PARTS=extra B/16 with pure bf16 weights, the whole forward compiled, Triton autotuned matmuls,
#               CUDA graphs of the whole forward + backward (reduce-overhead)               (~7 min)
#   PARTS=all   all three (default). On a lent GPU run the parts as separate calls, in this order
#               (a command may run 10 minutes; the device budget is shared by all calls).
#   SMOKE=1     CPU dry run with a tiny model: checks the script, not the speed. PYTHON=.venv/bin/python.
set -uo pipefail
PY=${PYTHON:-python}
out=${OUT:-gpu_results}
parts=${PARTS:-all}
mkdir -p "$out"
export PYTHONPATH=$(pwd):${PYTHONPATH:-}
bench() { timeout "${PART_TIMEOUT:-420}" "$PY" benchmarks/bench_train_step.py "$@" || echo "part failed: $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" 2>/dev/null || true
"$PY" -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" | tee "$out/versions.txt"

if [ -n "${SMOKE:-}" ]; then
  "$PY" benchmarks/gpu_checks.py --json "$out/checks.json" > /dev/null || echo "checks failed"
  bench --model pixio_mae_test --img-size 64 --batch 8 --variants reference,compile,bf16w,pure_bf16,pure_bf16_cg \
    --steps 1 --repeats 1 --warmup 1 --profile "$out/profile" --json "$out/smoke.json"
  exit 0
fi
common=(--img-size 256 --bf16 --steps 10 --repeats 3 --warmup 3)
if [ "$parts" = core ] || [ "$parts" = all ]; then
  timeout 300 "$PY" benchmarks/gpu_checks.py --model pixio_mae_vitb16 --batch 16 --json "$out/checks_b16.json" \
    || echo "part failed: gpu_checks"
  bench --model pixio_mae_vitb16 --batch 256 --variants reference,bf16w,compile "${common[@]}" \
    --json "$out/pixio_b16.json"
  bench --model pixio_mae_vitl16 --batch 128 --variants reference,bf16w "${common[@]}" --json "$out/pixio_l16.json"
  bench --model pixio_mae_vith16 --batch 64 --variants reference,bf16w "${common[@]}" --json "$out/pixio_h16.json"
fi
if [ "$parts" = big ] || [ "$parts" = all ]; then
  bench --model pixio_mae_vitb16 --batch 256 --variants bf16w --img-size 256 --bf16 --steps 3 --repeats 1 \
    --warmup 3 --profile "$out/profile_b16" --json "$out/profile_b16.json"
  gib=$("$PY" -c "import torch; print(int(torch.cuda.get_device_properties(0).total_memory / 2**30))")
  big=bf16w_ac; big_batch=64; [ "$gib" -lt 100 ] && { big=offload; big_batch=32; }
  bench --model pixio_mae_vit1b16 --batch 64 --variants bf16w_ac "${common[@]}" --steps 3 --json "$out/pixio_1b16.json"
  bench --model pixio_mae_vit5b16 --batch "$big_batch" --variants "$big" "${common[@]}" --steps 2 --repeats 2 \
    --warmup 2 --json "$out/pixio_5b16.json"
fi
if [ "$parts" = extra ] || [ "$parts" = all ]; then
  bench --model pixio_mae_vitb16 --batch 256 --variants pure_bf16,compile_model,bf16w_max "${common[@]}" \
    --json "$out/pixio_b16_extra.json"
  bench --model pixio_mae_vitb16 --batch 256 --variants compile_model_cg,pure_bf16_cg "${common[@]}" \
    --json "$out/pixio_b16_cudagraphs.json"
fi
ls -la "$out"
