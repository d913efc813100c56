#!/usr/bin/env bash
# Train the shipped icm-dicm-lite0 family (one variable-rate model) on this CPU, on every training
# folder of ../shared/data. Re-running resumes from the run's checkpoint; the run folder lives outside
# the repository (RUNS, default ~/.cache/icmkit-runs). Extra key=value arguments override the config.
#
#   scripts/train_dicm.sh [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-$HOME/.cache/icmkit-runs}
DATA=${DATA:-../shared/data}
ICM=${ICM:-.venv/bin/icm}
exec $ICM train --config configs/icm-dicm-lite0.yaml \
  "data=$DATA/imagenet-train500,$DATA/bsds500/train,$DATA/bsds500/val,$DATA/coco-train80/images" \
  "out=$RUNS/icm-dicm-lite0" "$@"
