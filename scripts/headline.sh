#!/usr/bin/env bash
# The headline experiment (docs/results.md): Pixio vs vanilla MAE vs random init at equal pretraining
# compute on the same simulator frames, then probes and a MetaWorld BC suite with 3 seeds.
#   OUT=runs/headline bash scripts/headline.sh   (6000 pixio steps: ~2 h on 2 CPU cores; every stage resumes)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/headline}
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 MUJOCO_GL=${MUJOCO_GL:-egl}
# one BLAS thread per process: the stages run side by side on 2 cores (oversubscribed OpenBLAS
# threads spin: a ridge fit measured 25x slower at load 10)
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
PIXIO_STEPS=${PIXIO_STEPS:-6000}
# equal compute: FlopCounterMode gives 1.188 GFLOP/image (fwd+bwd) for pixio_mae_tiny, 0.773 for mae_tiny
MAE_STEPS=$(( PIXIO_STEPS * 1188 / 773 ))
common=(batch_size=32 ckpt_every=250 optim.warmup_steps=100)
if [ "${STAGE:-all}" = all ] || [ "${STAGE}" = pretrain ]; then
  $PY -m pixio_robot.pretrain model=pixio_tiny steps=$PIXIO_STEPS run_dir=$OUT/pretrain_pixio "${common[@]}" num_threads=${THREADS:-1} &
  $PY -m pixio_robot.pretrain model=mae_tiny steps=$MAE_STEPS run_dir=$OUT/pretrain_mae "${common[@]}" num_threads=${THREADS:-1} &
  wait
fi
enc="[{label: pixio, source: checkpoint, name: pixio_vittiny, path: $OUT/pretrain_pixio, embedding: spatial},\
{label: mae, source: checkpoint, name: pixio_vittiny, path: $OUT/pretrain_mae, embedding: spatial},\
{label: random_init, source: pixio, name: pixio_vittiny, embedding: spatial}]"
bc_enc=(encoders.0.path=$OUT/pretrain_pixio encoders.1.path=$OUT/pretrain_mae)  # configs/benchmark/encoders/headline.yaml
if [ "${STAGE:-all}" = all ] || [ "${STAGE}" = probe ]; then
  $PY -m pixio_robot.probe "encoders=$enc" floors=true run_dir=$OUT/probe progress=false ${PROBE_ARGS:-}
fi
if [ "${STAGE:-all}" = all ] || [ "${STAGE}" = bc ]; then
  $PY -m pixio_robot.benchmark suite=quick encoders=headline "${bc_enc[@]}" 'suite.seeds=[100,200,300]' \
    run_dir=$OUT/bc progress=false num_threads=1
fi
if [ -f "$OUT/probe/report/probes.json" ] && [ -d "$OUT/bc/cells" ]; then  # probe scores beside success
  $PY -m pixio_robot.benchmark suite=quick encoders=headline "${bc_enc[@]}" 'suite.seeds=[100,200,300]' \
    run_dir=$OUT/bc probe_dir=$OUT/probe report_only=true progress=false
fi
