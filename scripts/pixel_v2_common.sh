# Shared by scripts/train_pixel_v2.sh and scripts/train_beta_sweep.sh (sourced, not run): the training data, the
# tools and the base both start from — the v1 icm-mse point at λ = 0.0067 (13,500 MSE steps on 128² crops; a
# single-rate mean-scale hyperprior, N=64, M=160), restored from git history into RUNS once.
# Reads RUNS; sets ICM, DATA, THREADS, TRAIN_DATA and BASE.
ICM=${ICM:-.venv/bin/icm}
DATA=${DATA:-../shared/data}
THREADS=${THREADS:-1}
TRAIN_DATA="data=$DATA/imagenet-train500,$DATA/bsds500/train,$DATA/bsds500/val,$DATA/coco-train80/images"
mkdir -p "$RUNS"
BASE=$RUNS/base.safetensors
[ -f "$BASE" ] || git show a06cc70:src/icmkit/zoo/weights/icm-mse-q4.safetensors > "$BASE"
