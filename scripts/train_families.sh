#!/usr/bin/env bash
# Trains the shipped icm-mse and icm-mmd families (6 rate points each) from the icm-mse q3 base, on a
# 2-core CPU, as two chains of one-thread processes running side by side (about an hour here).
#
# Same architecture and budget for both families (the ablation of the MMD term):
#   base (13,000 MSE steps at λ=0.0067, shipped as icm-mse q3 before this)
#   → trunk: 500 MSE steps at the rate point's λ (q3's trunk is the base itself)
#   → branch: 500 steps at that λ with the family's own loss, same seed, same crops, same schedule:
#       icm-mse: bpp + λ·255²·MSE            icm-mmd: bpp + λ·255²·MSE + β·Σ MMD²(Lite0 features)
#
# Usage: [DATA=../shared/data] [QUALITIES='0 1 2 3 4 5'] scripts/train_families.sh [RUNS_DIR]   (default runs/zoo); rerunning resumes
# every run (a finished one is only exported again).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/zoo}
ICM=${ICM:-.venv/bin/icm}
DATA=${DATA:-../shared/data}
TRAIN_DATA="data=$DATA/imagenet-train500,$DATA/bsds500/train,$DATA/bsds500/val"
# The base the shipped points started from is the icm-mse q3 file of commit bc3aa15; for an exact rerun:
#   mkdir -p runs/zoo/base && git show bc3aa15:src/icmkit/zoo/weights/icm-mse-q3.safetensors > runs/zoo/base/icm-mse-q3.safetensors
BASE=${BASE:-$RUNS/base/icm-mse-q3.safetensors}
declare -A LMBDA=([0]=0.0003 [1]=0.0008 [2]=0.0025 [3]=0.0067 [4]=0.02 [5]=0.045)
QUALITIES=${QUALITIES:-0 1 2 3 4 5}  # run names; the zoo numbers the points 1…6 by λ
TRUNK_STEPS=500
BRANCH_STEPS=500
if [ ! -f "$BASE" ]; then  # the base itself: 13,000 MSE steps at λ=0.0067 (about 80 min on 2 threads here)
  $ICM train "$TRAIN_DATA" out="$RUNS/base-run" lmbda=0.0067 crop=128 batch_size=8 steps=13000 lr=0.0005 lr_drop_at=0.9 \
    threads=2 log_every=100 checkpoint_every=250
  mkdir -p "$(dirname "$BASE")" && cp "$RUNS/base-run/final.safetensors" "$BASE"
fi

init_path() {  # the weights a rate point's branches start from
  if [ "$1" = 3 ]; then echo "$BASE"; else echo "$RUNS/trunk-q$1/final.safetensors"; fi
}

trunk() {  # the MSE fine-tune that moves the base to rate point $1
  local q=$1
  $ICM train --config configs/icm-mse.yaml "$TRAIN_DATA" out="$RUNS/trunk-q$q" lmbda="${LMBDA[$q]}" init_from="$BASE" \
    steps=$TRUNK_STEPS lr=0.0002 lr_drop_at=1.0 seed="$q" threads=1 log_every=50 checkpoint_every=100
}

branch() {  # family $1 at rate point $2 from trunk $3
  local family=$1 q=$2 init=$3
  $ICM train --config "configs/$family.yaml" "$TRAIN_DATA" out="$RUNS/$family-q$q" lmbda="${LMBDA[$q]}" init_from="$init" \
    steps=$BRANCH_STEPS lr=0.0002 lr_drop_at=0.8 seed="$q" threads=1 log_every=50 checkpoint_every=100
}

wait_for() { while [ ! -f "$1" ]; do sleep 20; done; }

# Chain A: the trunks (q3's is the base), then the MSE branches. Chain B: the MMD branches as trunks finish.
(
  for q in $QUALITIES; do [ "$q" = 3 ] || trunk "$q"; done
  for q in $QUALITIES; do branch icm-mse "$q" "$(init_path "$q")"; done
) >> "$RUNS/chain-a.log" 2>&1 &
(
  for q in $QUALITIES; do
    init=$(init_path "$q")
    wait_for "$init"
    branch icm-mmd "$q" "$init"
  done
) >> "$RUNS/chain-b.log" 2>&1 &
wait
echo "done: $(ls "$RUNS"/icm-*/final.safetensors | wc -l) final weight files in $RUNS"
