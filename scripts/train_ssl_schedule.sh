#!/usr/bin/env bash
# DICM's four-stage schedule on this CPU, each stage starting from the previous one's output:
#   1. configs/ssl-moco-lite0.yaml   MoCo v2 + semantic-guided crops      → ssl-moco-lite0/final.safetensors
#   2. configs/ssl-re-lite0.yaml     RE module on the frozen backbone     → ssl-re-lite0/final.safetensors
#   3. configs/ssl-joint-lite0.yaml  MoCo v2 + RE, jointly                → ssl-joint-lite0/{final,re}.safetensors
#   4. configs/ssl-codec-lite0.yaml  feature codec, backbone and RE frozen → ssl-codec-lite0/final.safetensors
# Run folders live under RUNS (default ~/.cache/icmkit-runs/ssl, outside the repository); the data are every
# training folder of DATA (default ../shared/data). Rerunning resumes the unfinished stage (finished ones only
# re-export, in seconds); a stage stopped early (max_minutes, stop_at) ends the script before the next one starts.
# Extra key=value arguments go to every stage (e.g. threads=1, device=cuda).
#
#   scripts/train_ssl_schedule.sh [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-$HOME/.cache/icmkit-runs/ssl}
DATA=${DATA:-../shared/data}
ICM=${ICM:-.venv/bin/icm}
PYTHON=${PYTHON:-.venv/bin/python}
FOLDERS="data=$DATA/imagenet-train500,$DATA/bsds500/train,$DATA/bsds500/val,$DATA/coco-train80/images"

# stage NAME [key=value ...]: train configs/NAME.yaml into $RUNS/NAME, then require that it reached its last step.
stage() {
  local name=$1
  shift
  $ICM train --config "configs/$name.yaml" "$FOLDERS" "out=$RUNS/$name" "$@"
  "$PYTHON" - "$RUNS/$name/checkpoint.json" "$name" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
if meta["step"] < meta["config"]["steps"]:
    sys.exit(f"{sys.argv[2]} stopped at step {meta['step']} of {meta['config']['steps']}: rerun to continue")
PY
}

stage ssl-moco-lite0 "$@"
stage ssl-re-lite0 "backbone_weights=$RUNS/ssl-moco-lite0/final.safetensors" "$@"
stage ssl-joint-lite0 "backbone_weights=$RUNS/ssl-moco-lite0/final.safetensors" \
  "ssl_re_from=$RUNS/ssl-re-lite0/final.safetensors" "$@"
stage ssl-codec-lite0 "backbone_weights=$RUNS/ssl-joint-lite0/final.safetensors" \
  "re_from=$RUNS/ssl-joint-lite0/re.safetensors" "$@"
