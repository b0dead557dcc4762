#!/usr/bin/env bash
# The README's main job: train SegNet-Basic briefly on the five bundled CamVid images, print the
# paper's metrics, segment a bundled image and write its colour mask and overlay.
#   examples/quickstart.sh [BUILD_DIR]        (default: build)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/build}/examples"
out="${SEGNET_QUICKSTART_OUT:-$root/out/quickstart}"
rm -rf "$out"
mkdir -p "$out"

echo "== 1. train SegNet-Basic for 12 epochs on the 5 bundled CamVid images at 180x240 (about 40 s) =="
echo "   (a demo: it validates on the images it trains on; see docs/training.md for real runs)"
"$bin/segnet-train" --model segnet-basic --train "$root/data/camvid/val.txt" --val "$root/data/camvid/val.txt" \
  --classes 11 --ignore 11 --balance median --epochs 12 --batch 1 --optimizer adam --lr 0.003 \
  --size 180x240 --out "$out/run" --seed 1

echo
echo "== 2. evaluate the best checkpoint (G, C, mIoU, BF in %) =="
"$bin/segnet-evaluate" --weights "$out/run/best.safetensors" --list "$root/data/camvid/val.txt" --size 180x240 \
  --json "$out/scores.json"

echo
echo "== 3. segment a bundled image: label PNG, colour mask, overlay =="
"$bin/segnet-segment" --weights "$out/run/best.safetensors" --input "$root/data/camvid/val/0016E5_07959.png" \
  --out "$out/segmented" --size 180x240 --color --overlay
echo
echo "done: $out/segmented/0016E5_07959_color.png (colour mask), $out/run/log.csv (training log)"
