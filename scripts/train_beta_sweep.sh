#!/usr/bin/env bash
# The β sweep of the icm-mmd recipe at equal budget: configs/icm-mmd.yaml from the same base as the shipped
# families, on the shipped 2,500-step schedule stopped at STOP steps (stop_at keeps the learning-rate schedule),
# once per β. β = 0 is configs/icm-mse.yaml under the same budget: the context ablation's `abl-context` run
# (README, "What the context buys"), so the sweep compares every β with no perception term at all.
#
# Usage: [DATA=../shared/data] [THREADS=1] [STOP=500] [BETAS="2 5 10"] scripts/train_beta_sweep.sh [RUNS_DIR] [key=value ...]
# (default RUNS_DIR ~/.cache/icmkit-runs/pixel-v2; runs go to RUNS_DIR/beta-B, one after the other).
# Rerunning resumes the unfinished run; a finished one is only exported again.
# Then: python benchmarks/pixel_evidence.py ablate --data ../shared/data/imagenet-dev200 --out bench/v2-beta \
#         beta-0=RUNS_DIR/abl-context beta-2=RUNS_DIR/beta-2 beta-5=RUNS_DIR/beta-5 beta-10=RUNS_DIR/beta-10
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-$HOME/.cache/icmkit-runs/pixel-v2}
shift || true
STOP=${STOP:-500}
BETAS=${BETAS:-2 5 10}
source scripts/pixel_v2_common.sh
for beta in $BETAS; do
  $ICM train --config configs/icm-mmd.yaml "$TRAIN_DATA" out="$RUNS/beta-$beta" init_from="$BASE" threads="$THREADS" \
    steps=2500 stop_at="$STOP" beta="$beta" "$@" > "$RUNS/beta-$beta.log" 2>&1
done
