#!/usr/bin/env bash
# Train the ResNet-50 feature codec (icm-dicm-r50: one variable-rate model between ResNet-50's layer1 and its
# tail, the head shared with torchvision's v1 COCO detectors) where the ImageNet weights are at hand:
# torchvision's IMAGENET1K_V1 in its cache (~/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth; downloaded
# once with internet), or a local file (BACKBONE_WEIGHTS=/path/resnet50-0676ba61.pth). Re-running resumes from
# the run's checkpoint; the run folder lives outside the repository (RUNS, default ~/.cache/icmkit-runs).
# Extra key=value arguments override the config (e.g. steps=20000, device=cuda). Several GPUs:
#   NPROC=8 scripts/train_dicm_r50.sh
#
#   DATA=/path/to/imagenet/train scripts/train_dicm_r50.sh [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-$HOME/.cache/icmkit-runs}
DATA=${DATA:-../shared/data/imagenet-train500,../shared/data/coco-train80/images}
BACKBONE_WEIGHTS=${BACKBONE_WEIGHTS:-IMAGENET1K_V1}
ICM=${ICM:-.venv/bin/icm}
NPROC=${NPROC:-1}
ARGS=(--config configs/icm-dicm-r50.yaml "data=$DATA" "out=$RUNS/icm-dicm-r50" "backbone_weights=$BACKBONE_WEIGHTS" "$@")
if [ "$NPROC" -gt 1 ]; then
  exec "$(dirname "$ICM")/torchrun" --standalone --nproc_per_node "$NPROC" -m icmkit train "${ARGS[@]}"
fi
exec $ICM train "${ARGS[@]}"
