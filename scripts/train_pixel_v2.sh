#!/usr/bin/env bash
# Trains the shipped pixel families v2 (icm-mse, icm-mmd: one variable-rate model each) on a 2-core CPU, as two
# one-thread processes side by side, from the same base and with the same budget (the MMD ablation stays fair).
#
#   BASE: the v1 icm-mse point at λ = 0.0067 (13,500 MSE steps on 128² crops; a single-rate mean-scale hyperprior,
#         N=64, M=160), restored from git history:
#         git show a06cc70:src/icmkit/zoo/weights/icm-mse-q4.safetensors > $RUNS/base.safetensors
#   then configs/icm-mse.yaml and configs/icm-mmd.yaml with init_from=BASE.
#
# Usage: [DATA=../shared/data] [THREADS=1] scripts/train_pixel_v2.sh [RUNS_DIR] [key=value ...]
# (default RUNS_DIR ~/.cache/icmkit-runs/pixel-v2; extra key=value pairs go to both runs, e.g. max_minutes=70).
# Rerunning resumes both runs from their last checkpoint (a finished run is only exported again).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-$HOME/.cache/icmkit-runs/pixel-v2}
shift || true
source scripts/pixel_v2_common.sh
for family in icm-mse icm-mmd; do
  $ICM train --config "configs/$family.yaml" "$TRAIN_DATA" out="$RUNS/$family" init_from="$BASE" threads="$THREADS" \
    "$@" > "$RUNS/$family.log" 2>&1 &
done
wait
