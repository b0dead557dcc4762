#!/usr/bin/env bash
# The README's main job: segment the five bundled CamVid val images with the shipped SegNet-Basic
# (trained by segnet-train on CamVid, docs/results.md), print their metrics and write label PNGs,
# colour masks and overlays. Well under a minute, no download.
#   examples/quickstart.sh [BUILD_DIR]        (default: build)
#   examples/quickstart.sh [BUILD_DIR] --train-demo   also train a SegNet-Basic from scratch on the
#                                                     five images for 12 epochs (about a minute)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/build}/examples"
out="${SEGNET_QUICKSTART_OUT:-$root/out/quickstart}"
weights="$root/models/segnet-basic-camvid.safetensors"
programs=(segnet-evaluate segnet-segment)
[[ "${2:-}" == "--train-demo" ]] && programs+=(segnet-train)
for program in "${programs[@]}"; do
  if [[ ! -x "$bin/$program" ]]; then
    echo "quickstart: '$bin/$program' is missing: build it first (cmake -S . -B build && cmake --build build -j2 --target $program)" >&2
    exit 1
  fi
done
rm -rf "$out"
mkdir -p "$out"

echo "== 1. the paper's metrics of the shipped SegNet-Basic on the 5 bundled CamVid val images (360x480) =="
echo "   (the whole 101-image val split: docs/results.md)"
"$bin/segnet-evaluate" --weights "$weights" --list "$root/data/camvid/val.txt" --json "$out/scores.json"

echo
echo "== 2. segment them: label PNG, colour mask (CamVid palette) and overlay per image =="
"$bin/segnet-segment" --weights "$weights" --input "$root/data/camvid/val" --out "$out/segmented" --color --overlay

if [[ "${2:-}" == "--train-demo" ]]; then
  echo
  echo "== 3. train a SegNet-Basic from scratch for 12 epochs on the same 5 images at 180x240 =="
  echo "   (a demo of the training loop: it validates on the images it trains on; see docs/training.md)"
  "$bin/segnet-train" --model segnet-basic --train "$root/data/camvid/val.txt" --val "$root/data/camvid/val.txt" \
    --classes 11 --ignore 11 --balance median --epochs 12 --batch 1 --optimizer adam --lr 0.003 \
    --size 180x240 --out "$out/run" --seed 1
fi
echo
echo "done: $out/segmented/ (*.png labels, *_color.png masks, *_overlay.png overlays), $out/scores.json"
