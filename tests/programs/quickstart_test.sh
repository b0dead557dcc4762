#!/usr/bin/env bash
# The README's main job on the shipped checkpoint: it must succeed, print the metrics, write a
# label PNG, colour mask and overlay per bundled image, and the shipped model must segment the
# bundled images far better than chance (an untrained or wrongly loaded SegNet-Basic scores
# G < 40 here; the shipped one, docs/results.md, scores above 70).
#   tests/programs/quickstart_test.sh BUILD_DIR
set -euo pipefail
build="$1"
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
SEGNET_QUICKSTART_OUT="$out/q" bash "$root/examples/quickstart.sh" "$build" > "$out/stdout.txt"
cat "$out/stdout.txt"
fail() { echo "quickstart_test: $*" >&2; exit 1; }
grep -q "mIoU" "$out/stdout.txt" || fail "no metrics printed"
for image in "$root"/data/camvid/val/*.png; do
  stem="$(basename "$image" .png)"
  for suffix in "" _color _overlay; do
    [[ -s "$out/q/segmented/$stem$suffix.png" ]] || fail "missing $stem$suffix.png"
  done
done
g="$(sed -n 's/.*"global_accuracy": *\([0-9.]*\).*/\1/p' "$out/q/scores.json" | head -1)"
[[ -n "$g" ]] || fail "no global_accuracy in scores.json"
awk -v g="$g" 'BEGIN { exit !(g > 70) }' || fail "global accuracy $g of the shipped model on the bundled images is not above 70"
echo "quickstart_test: ok (G $g)"
