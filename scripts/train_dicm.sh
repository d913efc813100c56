#!/usr/bin/env bash
# Train the shipped icm-dicm-lite0 family (one variable-rate model) on this CPU, on every training folder of
# ../shared/data: first the head-feature cache (32 views per image; a rerun resumes it), then the codec from it.
# Re-running resumes from the run's checkpoint; run folders and the cache live outside the repository (RUNS,
# default ~/.cache/icmkit-runs). Extra key=value arguments override the config.
#
#   scripts/train_dicm.sh [key=value ...]
#   CONFIG=configs/icm-dicm-lite0.yaml CACHE=none scripts/train_dicm.sh   # v2: random crops through the head
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-$HOME/.cache/icmkit-runs}
DATA=${DATA:-../shared/data}
ICM=${ICM:-.venv/bin/icm}
CONFIG=${CONFIG:-configs/icm-dicm-lite0-v3.yaml}
CACHE=${CACHE:-$RUNS/feature-cache/lite0-blocks2}
FOLDERS="data=$DATA/imagenet-train500,$DATA/bsds500/train,$DATA/bsds500/val,$DATA/coco-train80/images"
if [ "$CACHE" != none ]; then
  $ICM cache features --config "$CONFIG" "$FOLDERS" --out "$CACHE" --views 32 --workers "${WORKERS:-2}"
  set -- "feature_cache=$CACHE" "$@"
fi
exec $ICM train --config "$CONFIG" "$FOLDERS" "out=$RUNS/$(basename "$CONFIG" .yaml)" "$@"
