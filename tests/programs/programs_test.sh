#!/usr/bin/env bash
# End-to-end test of the programs on the committed shapes set: train, resume, evaluate,
# segment, and the one-line errors (exit status 2 for usage, 1 for bad input) of bad input.
#   programs_test.sh BIN_DIR DATA_DIR
set -uo pipefail
bin="$1"
data="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
passes=0

check() {  # check NAME EXPECTED_STATUS PATTERN -- command...
  local name="$1" want="$2" pattern="$3"
  shift 4
  local out status
  out="$("$@" 2>&1)"
  status=$?
  if [[ $status -ne $want ]]; then
    echo "FAIL $name: exit status $status, expected $want"; echo "$out" | tail -5; failures=$((failures + 1)); return
  fi
  if [[ -n "$pattern" ]] && ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: output lacks /$pattern/"; echo "$out" | tail -5; failures=$((failures + 1)); return
  fi
  if [[ $want -ne 0 ]] && [[ $(grep -c . <<<"$out") -ne 1 ]]; then
    echo "FAIL $name: the error is not one line:"; echo "$out"; failures=$((failures + 1)); return
  fi
  echo "ok   $name"
  passes=$((passes + 1))
}

train=(--model segnet-basic --train "$data/train/list.txt" --val "$data/val/list.txt" --classes 4 --ignore -1
       --balance natural --batch 4 --optimizer adam --lr 0.01 --threads 2 --seed 1)

check "train 2 epochs" 0 "best: G" -- "$bin/segnet-train" "${train[@]}" --epochs 2 --out "$work/run"
check "log.csv has a header and 2 rows" 0 "" -- test "$(wc -l < "$work/run/log.csv")" -eq 3
check "resume to 3 epochs" 0 "resuming" -- "$bin/segnet-train" "${train[@]}" --epochs 3 --out "$work/run" --resume "$work/run/last.safetensors"
check "log.csv has 3 rows after resume" 0 "" -- test "$(wc -l < "$work/run/log.csv")" -eq 4
# Stages: --stop-after ends a run on the schedule of --epochs; resuming it equals one run.
check "a straight 3-epoch run" 0 "best: G" -- "$bin/segnet-train" "${train[@]}" --epochs 3 --schedule poly --out "$work/straight"
check "stage 1: stop after epoch 1 of 3" 0 "last checkpoint" -- "$bin/segnet-train" "${train[@]}" --epochs 3 --schedule poly \
  --stop-after 1 --out "$work/staged"
check "stage 1 wrote one epoch" 0 "" -- test "$(wc -l < "$work/staged/log.csv")" -eq 2
check "stage 2: resume to 3" 0 "best: G" -- "$bin/segnet-train" "${train[@]}" --epochs 3 --schedule poly \
  --resume "$work/staged/last.safetensors" --out "$work/staged"
check "the staged run's lr and loss equal the straight run's" 0 "" -- \
  cmp <(cut -d, -f1-3 "$work/straight/log.csv") <(cut -d, -f1-3 "$work/staged/log.csv")
check "--stop-after at the epochs done" 2 "--stop-after 3: .* has 3 epochs done already" -- "$bin/segnet-train" \
  "${train[@]}" --epochs 4 --stop-after 3 --resume "$work/staged/last.safetensors" --out "$work/staged"
check "--val-every 2: 3 epochs" 0 "best: G" -- "$bin/segnet-train" "${train[@]}" --epochs 3 --val-every 2 --out "$work/sparse"
check "--val-every 2 validates epochs 2 and 3 (the last), not 1" 0 "" -- \
  test "$(cut -d, -f1,4 "$work/sparse/log.csv" | tail -n +2 | sed 's/,[0-9.]\+$/,v/' | tr '\n' ' ')" = "1, 2,v 3,v "
check "--val-every 0" 2 "--val-every" -- "$bin/segnet-train" "${train[@]}" --val-every 0 --out "$work/x"
check "train small, validate at the images' size" 0 "val G" -- "$bin/segnet-train" "${train[@]}" --epochs 1 \
  --size 32x32 --val-size native --out "$work/small"
check "train on crops, validate on whole images" 0 "48x32 crops.*" -- "$bin/segnet-train" "${train[@]}" --epochs 1 \
  --crop 32x48 --augment --out "$work/crops"
check "a crop the network cannot take" 2 "--crop is 5x4, a size segnet-basic cannot take" -- "$bin/segnet-train" \
  "${train[@]}" --crop 4x5 --out "$work/x"
check "bad --val-size" 2 "--val-size: expected HxW .e.g. 360x480., got 'big'" -- "$bin/segnet-train" "${train[@]}" \
  --val-size big --out "$work/x"
check "evaluate a checkpoint" 0 "^G [0-9.]+  C [0-9.]+  mIoU [0-9.]+  BF [0-9.]+" -- \
  "$bin/segnet-evaluate" --weights "$work/run/best.safetensors" --list "$data/val/list.txt" --json "$work/scores.json"
check "evaluate writes JSON" 0 "" -- grep -q '"global_accuracy": [0-9]' "$work/scores.json"
check "segment a folder" 0 "0007.png" -- "$bin/segnet-segment" --weights "$work/run/best.safetensors" \
  --input "$data/val/images" --out "$work/pred"
check "one label PNG per image" 0 "" -- test "$(ls "$work/pred" | wc -l)" -eq 8
check "segment with colour masks and overlays" 0 "0000.png" -- "$bin/segnet-segment" \
  --weights "$work/run/best.safetensors" --input "$data/val/images/0000.png" --out "$work/colour" --color --overlay
check "colour masks and overlays exist" 0 "" -- test -f "$work/colour/0000_color.png" -a -f "$work/colour/0000_overlay.png"
check "evaluate predictions against truth" 0 "images 8" -- \
  "$bin/segnet-evaluate" --pred "$work/pred" --gt "$data/val/labels" --classes 4 --ignore -1

# Bayesian SegNet: Monte-Carlo dropout labels and an uncertainty map; its one-line refusals.
check "train Bayesian SegNet-Basic" 0 "last checkpoint" -- "$bin/segnet-train" --model bayesian-segnet-basic \
  --train "$data/train/list.txt" --classes 4 --ignore -1 --balance natural --batch 4 --epochs 1 --threads 2 \
  --seed 1 --out "$work/bayes"
check "segment with 4 dropout samples and uncertainty" 0 "0000.png" -- "$bin/segnet-segment" \
  --weights "$work/bayes/last.safetensors" --input "$data/val/images/0000.png" --out "$work/mc" --samples 4 --uncertainty
check "labels and uncertainty map exist" 0 "" -- test -f "$work/mc/0000.png" -a -f "$work/mc/0000_uncertainty.png"
check "--samples 0" 2 "--samples: 0 is out of range \\[1, 1000\\]" -- "$bin/segnet-segment" \
  --weights "$work/bayes/last.safetensors" --input "$data/val/images/0000.png" --out "$work/mc0" --samples 0
check "--samples 100000" 2 "--samples: 100000 is out of range" -- "$bin/segnet-segment" \
  --weights "$work/bayes/last.safetensors" --input "$data/val/images/0000.png" --out "$work/mc0" --samples 100000
check "--samples on a model without dropout" 2 "--samples: the model 'segnet-basic' has no dropout" -- \
  "$bin/segnet-segment" --weights "$work/run/best.safetensors" --input "$data/val/images/0000.png" --out "$work/mc0" \
  --samples 4
check "--uncertainty without --samples" 2 "--uncertainty: needs --samples" -- "$bin/segnet-segment" \
  --weights "$work/bayes/last.safetensors" --input "$data/val/images/0000.png" --out "$work/mc0" --uncertainty
check "refused runs wrote nothing" 0 "" -- test ! -e "$work/mc0"
check "evaluate with 3 dropout samples" 0 "^G [0-9]" -- "$bin/segnet-evaluate" \
  --weights "$work/bayes/last.safetensors" --list "$data/val/list.txt" --samples 3
check "evaluate --calibration: accuracy per uncertainty decile" 0 "^\| 10 \| [0-9.]+-1\.000 \|" -- \
  "$bin/segnet-evaluate" --weights "$work/bayes/last.safetensors" --list "$data/val/list.txt" --samples 3 \
  --no-bf --calibration "$work/calibration.json"
check "  ... and as JSON: ten deciles whose pixels add up to the counted pixels" 0 "" -- /usr/bin/python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
assert len(c["deciles"]) == 10 and sum(d["pixels"] for d in c["deciles"]) == c["pixels"] > 0
assert all(0 <= d["accuracy"] <= 100 for d in c["deciles"])' "$work/calibration.json"
check "evaluate --calibration with --pred/--gt is refused" 2 "--calibration needs the network's probabilities" -- \
  "$bin/segnet-evaluate" --pred "$work/pred" --gt "$data/val/labels" --classes 4 --ignore -1 --calibration "$work/c2.json"
check "evaluate --samples on a model without dropout" 2 "--samples: the model 'segnet-basic' has no dropout" -- \
  "$bin/segnet-evaluate" --weights "$work/run/best.safetensors" --list "$data/val/list.txt" --samples 3
check "evaluate --samples 0" 2 "--samples: 0 is out of range" -- "$bin/segnet-evaluate" \
  --weights "$work/bayes/last.safetensors" --list "$data/val/list.txt" --samples 0

# Dense CRF (--crf): labels of the probabilities refined at the network's size; its refusals.
image0=(--input "$data/val/images/0000.png")
# The 1-epoch Bayesian SegNet-Basic (dropout off here) is unsure enough for the CRF to move labels.
check "segment without the CRF" 0 "0000.png" -- "$bin/segnet-segment" --weights "$work/bayes/last.safetensors" \
  "${image0[@]}" --out "$work/nocrf"
check "segment with the dense CRF" 0 "0000.png" -- "$bin/segnet-segment" --weights "$work/bayes/last.safetensors" \
  "${image0[@]}" --out "$work/crf" --crf --crf-smoothness 60,3 --crf-appearance 60,40,20
check "the CRF changes the labels" 1 "differ" -- cmp "$work/crf/0000.png" "$work/nocrf/0000.png"
check "the CRF's labels are classes of the model" 0 "images 1" -- "$bin/segnet-evaluate" --pred "$work/crf" \
  --gt "$data/val/labels" --classes 4 --ignore -1 --allow-missing
check "0 CRF iterations keep the network's labels" 0 "0000.png" -- "$bin/segnet-segment" \
  --weights "$work/bayes/last.safetensors" "${image0[@]}" --out "$work/crf0" --crf --crf-iterations 0
check "... the same file as without --crf" 0 "" -- cmp "$work/crf0/0000.png" "$work/nocrf/0000.png"
check "the CRF on the mean of dropout samples" 0 "0000.png" -- "$bin/segnet-segment" \
  --weights "$work/bayes/last.safetensors" "${image0[@]}" --out "$work/mccrf" --samples 4 --crf \
  --crf-smoothness 60,3 --crf-appearance 60,40,20
check "... differs from the samples' own labels" 1 "differ" -- cmp "$work/mccrf/0000.png" "$work/mc/0000.png"
check "evaluate with the dense CRF" 0 "^G [0-9]" -- "$bin/segnet-evaluate" --weights "$work/run/best.safetensors" \
  --list "$data/val/list.txt" --crf --crf-iterations 3
check "evaluate with the CRF and dropout samples" 0 "^G [0-9]" -- "$bin/segnet-evaluate" \
  --weights "$work/bayes/last.safetensors" --list "$data/val/list.txt" --samples 2 --crf --crf-iterations 2
crf_refused() {  # crf_refused NAME PATTERN -- crf flags...
  local name="$1" pattern="$2"
  shift 3
  check "segment $name" 2 "$pattern" -- "$bin/segnet-segment" --weights "$work/run/best.safetensors" "${image0[@]}" \
    --out "$work/crfbad" "$@"
}
crf_refused "--crf-iterations -1" "^segnet-segment: --crf-iterations: -1 is out of range" -- --crf --crf-iterations -1
crf_refused "--crf-appearance of 2 numbers" "--crf-appearance: expected 3 comma-separated numbers" -- \
  --crf --crf-appearance 4,60
crf_refused "a negative CRF weight" "--crf-smoothness: the weight must be a number >= 0" -- --crf --crf-smoothness -3,3
crf_refused "a zero CRF width" "--crf-appearance: theta_rgb must be a number > 0" -- --crf --crf-appearance 4,60,0
crf_refused "a CRF width that is not a number" "--crf-smoothness: theta_xy must be a number > 0" -- \
  --crf --crf-smoothness 3,abc
crf_refused "a CRF parameter without --crf" "--crf-smoothness: needs --crf" -- --crf-smoothness 3,3
check "refused CRF runs wrote nothing" 0 "" -- test ! -e "$work/crfbad"
check "evaluate --crf with --pred" 2 "--crf applies to running a checkpoint" -- "$bin/segnet-evaluate" \
  --pred "$work/pred" --gt "$data/val/labels" --classes 4 --ignore -1 --crf

check "a network of your own in the same program" 0 "last checkpoint" -- "$bin/custom-train" --model tiny-segnet \
  --classes 4 --ignore -1 --train "$data/train/list.txt" --balance natural --epochs 1 --batch 8 --out "$work/custom"
check "its checkpoint names the network" 0 "" -- grep -q "tiny-segnet" "$work/custom/last.safetensors"
check "its class count is checked" 1 "model 'tiny-segnet' has 4 classes, not 5" -- "$bin/custom-train" \
  --model tiny-segnet --classes 5 --ignore -1 --train "$data/train/list.txt" --out "$work/custom5"

# Bad input: one line naming the file or option, the right status, no partial output.
check "unknown option" 2 "unknown option '--epoch'" -- "$bin/segnet-train" --epoch 3
check "bad integer" 2 "--epochs: expected an integer, got 'x'" -- "$bin/segnet-train" "${train[@]}" --epochs x --out "$work/x"
check "missing list file" 1 "no-such.txt" -- "$bin/segnet-train" --model segnet-basic --train "$work/no-such.txt" --out "$work/x"
check "unknown model" 1 "unknown model 'segnet-huge'" -- "$bin/segnet-train" --model segnet-huge --train "$data/train/list.txt" --out "$work/x"
check "unsupported class count" 1 "7 classes is not a supported class count" -- \
  "$bin/segnet-train" --model segnet-basic --classes 7 --train "$data/train/list.txt" --out "$work/x"
check "label out of range" 1 "labels/0000.png.* has value 3" -- "$bin/segnet-train" --model segnet-basic --classes 3 --ignore -1 \
  --train "$data/train/list.txt" --out "$work/x"
printf 'not a checkpoint at all' > "$work/garbage.safetensors"
check "garbage checkpoint" 1 "garbage.safetensors" -- "$bin/segnet-evaluate" --weights "$work/garbage.safetensors" --list "$data/val/list.txt"
head -c 3000 "$work/run/best.safetensors" > "$work/cut.safetensors"
check "truncated checkpoint" 1 "cut.safetensors" -- "$bin/segnet-segment" --weights "$work/cut.safetensors" --input "$data/val/images" --out "$work/p2"
check "model differs from checkpoint" 2 "differs from the checkpoint's model" -- \
  "$bin/segnet-train" --model fcn-basic --train "$data/train/list.txt" --epochs 4 --out "$work/run" \
  --resume "$work/run/last.safetensors"
check "missing input image" 1 "nothing.png" -- "$bin/segnet-segment" --weights "$work/run/best.safetensors" --input "$work/nothing.png" --out "$work/p3"
mkdir -p "$work/readonly" && chmod 500 "$work/readonly"
if [[ $(id -u) -ne 0 ]]; then
  check "unwritable output folder" 1 "readonly" -- "$bin/segnet-segment" --weights "$work/run/best.safetensors" \
    --input "$data/val/images/0000.png" --out "$work/readonly/sub"
fi
check "output folder under a file" 1 "cannot create output folder" -- "$bin/segnet-segment" \
  --weights "$work/run/best.safetensors" --input "$data/val/images/0000.png" --out "$work/garbage.safetensors/sub"

# --- the bad-input suite: images, labels, checkpoints, files, output folders ------------------
# Every case: status 1, one line naming the file and the problem, no output file left behind.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
data="$(cd "$data" && pwd)"  # list files below hold absolute paths
bad="$work/bad" && mkdir -p "$bad"
img="$data/val/images/0000.png"
ckpt="$work/run/best.safetensors"
size_of() { wc -c < "$1"; }
# same_length_subst IN OUT PERL_FROM PERL_TO: edits a checkpoint's JSON header in place of equal
# length, so the 8-byte header length stays right and only the intended fault is present.
same_length_subst() {
  perl -0777 -pe "s/$3/$4/" "$1" > "$2"
  if [[ $(size_of "$1") -ne $(size_of "$2") ]] || cmp -s "$1" "$2"; then echo "FAIL fixture $2: substitution /$3/ did not apply"; failures=$((failures + 1)); fi
}
# no_output DIR: the failed run left no file in its output folder.
no_output() { test -z "$(find "$1" -type f 2>/dev/null)"; }

# Images given to segnet-segment.
head -c "$(( $(size_of "$img") / 2 ))" "$img" > "$bad/truncated.png"
cp "$img" "$bad/corrupt.png" && printf '\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff%.0s' {1..8} |
  dd of="$bad/corrupt.png" bs=1 seek=120 conv=notrunc status=none
cp "$repo/tests/data/data_io/huge_header.png" "$bad/huge.png"
printf 'this is not an image\n' > "$bad/text.png"
: > "$bad/empty.png"
check "truncated PNG" 1 "truncated.png.*(corrupt|truncated)" -- "$bin/segnet-segment" --weights "$ckpt" --input "$bad/truncated.png" --out "$bad/o1"
check "  ... no output" 0 "" -- no_output "$bad/o1"
check "corrupt PNG data" 1 "corrupt.png.*corrupt" -- "$bin/segnet-segment" --weights "$ckpt" --input "$bad/corrupt.png" --out "$bad/o2"
check "  ... no output" 0 "" -- no_output "$bad/o2"
check "huge declared PNG size refused before decoding" 1 "huge.png.*100000x100000 exceeds the image size limit" -- \
  "$bin/segnet-segment" --weights "$ckpt" --input "$bad/huge.png" --out "$bad/o3"
check "  ... no output" 0 "" -- no_output "$bad/o3"
check "text file named .png" 1 "text.png.*not a PNG or JPEG" -- "$bin/segnet-segment" --weights "$ckpt" --input "$bad/text.png" --out "$bad/o4"
check "empty image file" 1 "empty.png" -- "$bin/segnet-segment" --weights "$ckpt" --input "$bad/empty.png" --out "$bad/o5"
check "  ... no output" 0 "" -- no_output "$bad/o5"

# Images and labels in a training list (checked before training starts).
bad_list() {  # bad_list NAME "image label" -> $bad/NAME.txt, paths relative to the shapes train set
  printf '%s\n' "$2" > "$bad/$1.txt"
}
tl=(--model segnet-basic --classes 4 --ignore -1 --epochs 1 --batch 2 --threads 2)
cp "$data/train/labels/0000.png" "$bad/label_ok.png"
head -c 60 "$data/train/labels/0000.png" > "$bad/label_cut.png"
bad_list size_mismatch "$data/train/images/0000.png $repo/data/camvid/valannot/0016E5_07959.png"
check "image/label size mismatch" 1 "0016E5_07959.png.*(size|[0-9]+x[0-9]+)" -- "$bin/segnet-train" "${tl[@]}" --train "$bad/size_mismatch.txt" --out "$bad/t1"
check "  ... no output" 0 "" -- no_output "$bad/t1"
bad_list colour_label "$data/train/images/0000.png $data/train/images/0001.png"
check "colour image given as a label" 1 "0001.png.*8-bit single-channel" -- "$bin/segnet-train" "${tl[@]}" --train "$bad/colour_label.txt" --out "$bad/t2"
bad_list truncated_label "$data/train/images/0000.png $bad/label_cut.png"
check "truncated label PNG" 1 "label_cut.png.*(corrupt|truncated)" -- "$bin/segnet-train" "${tl[@]}" --train "$bad/truncated_label.txt" --out "$bad/t3"
bad_list huge_image "$bad/huge.png $bad/label_ok.png"
check "huge image in a list" 1 "huge.png.*exceeds the image size limit" -- "$bin/segnet-train" "${tl[@]}" --train "$bad/huge_image.txt" --out "$bad/t4"
bad_list missing_label "$data/train/images/0000.png $bad/no-such-label.png"
check "missing label file" 1 "no-such-label.png" -- "$bin/segnet-train" "${tl[@]}" --train "$bad/missing_label.txt" --out "$bad/t5"
check "  ... no output" 0 "" -- no_output "$bad/t5"
printf 'images/0000.png\n' > "$bad/one_field.txt"
check "list line with one field" 1 "one_field.txt:1" -- "$bin/segnet-train" "${tl[@]}" --train "$bad/one_field.txt" --out "$bad/t6"
check "prediction value out of range (evaluate)" 1 "0001.png.*label value 3 .* is not a class" -- "$bin/segnet-evaluate" --pred "$work/pred" --gt "$data/val/labels" \
  --classes 3 --ignore -1

# Checkpoints.
printf '\xff\xff\xff\x7f\x00\x00\x00\x00{}' > "$bad/header_past_end.safetensors"
check "checkpoint header length past the end" 1 "header_past_end.safetensors" -- "$bin/segnet-segment" --weights "$bad/header_past_end.safetensors" --input "$img" --out "$bad/c1"
check "  ... no output" 0 "" -- no_output "$bad/c1"
: > "$bad/empty.safetensors"
check "empty checkpoint" 1 "empty.safetensors" -- "$bin/segnet-segment" --weights "$bad/empty.safetensors" --input "$img" --out "$bad/c2"
same_length_subst "$ckpt" "$bad/f16.safetensors" '"F32"' '"F16"'
check "checkpoint with a wrong dtype" 1 "f16.safetensors.*F16" -- "$bin/segnet-segment" --weights "$bad/f16.safetensors" --input "$img" --out "$bad/c3"
same_length_subst "$ckpt" "$bad/garbled.safetensors" '"data_offsets"' '"data_offsetz"'
check "garbled checkpoint header" 1 "garbled.safetensors" -- "$bin/segnet-segment" --weights "$bad/garbled.safetensors" --input "$img" --out "$bad/c4"
same_length_subst "$ckpt" "$bad/braces.safetensors" '\{' '['
check "checkpoint header that is not JSON" 1 "braces.safetensors" -- "$bin/segnet-segment" --weights "$bad/braces.safetensors" --input "$img" --out "$bad/c5"
same_length_subst "$ckpt" "$bad/renamed.safetensors" '"encoder0\.0\.weight"' '"encoder0.0.weighx"'
check "checkpoint missing a tensor" 1 "renamed.safetensors.*encoder0.0.weight" -- "$bin/segnet-segment" --weights "$bad/renamed.safetensors" --input "$img" --out "$bad/c6"
same_length_subst "$ckpt" "$bad/classes.safetensors" '"classes":( *)"4"' '"classes":$1"5"'
check "checkpoint with a wrong tensor shape" 1 "classes.safetensors.*shape" -- "$bin/segnet-segment" --weights "$bad/classes.safetensors" --input "$img" --out "$bad/c7"
check "  ... no output" 0 "" -- no_output "$bad/c7"
same_length_subst "$ckpt" "$bad/other_model.safetensors" '"segnet-basic"' '"fcn-basic"   '
check "checkpoint of another model" 1 "other_model.safetensors" -- "$bin/segnet-evaluate" --weights "$bad/other_model.safetensors" --list "$data/val/list.txt"
header='{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
{ printf "\\x$(printf '%02x' ${#header})\\x00\\x00\\x00\\x00\\x00\\x00\\x00"; printf '%s' "$header"; printf '\x00\x00\x80\x3f'; } > "$bad/plain.safetensors"
check "safetensors file that is not a segnet checkpoint" 1 "plain.safetensors.*not a segnet checkpoint" -- "$bin/segnet-segment" --weights "$bad/plain.safetensors" --input "$img" --out "$bad/c8"
check "truncated checkpoint (data cut)" 1 "cut_data.safetensors" -- bash -c "head -c $(( $(size_of "$ckpt") - 100 )) '$ckpt' > '$bad/cut_data.safetensors' && '$bin/segnet-evaluate' --weights '$bad/cut_data.safetensors' --list '$data/val/list.txt'"
check "resume from a truncated checkpoint" 1 "cut_data.safetensors" -- "$bin/segnet-train" "${train[@]}" --epochs 4 --out "$bad/t7" --resume "$bad/cut_data.safetensors"

# Missing files and folders.
check "missing checkpoint" 1 "no-such.safetensors.*(not found|No such)" -- "$bin/segnet-segment" --weights "$work/no-such.safetensors" --input "$img" --out "$bad/m1"
check "checkpoint is a folder" 1 "is a directory" -- "$bin/segnet-segment" --weights "$work/run" --input "$img" --out "$bad/m2"
check "missing evaluation list" 1 "no-such-list.txt" -- "$bin/segnet-evaluate" --weights "$ckpt" --list "$work/no-such-list.txt"
check "missing prediction folder" 1 "no-such-pred" -- "$bin/segnet-evaluate" --pred "$work/no-such-pred" --gt "$data/val/labels" --classes 4
check "missing input folder" 1 "no-such-folder" -- "$bin/segnet-segment" --weights "$ckpt" --input "$work/no-such-folder/" --out "$bad/m3"
check "missing palette" 1 "no-such-palette.txt" -- "$bin/segnet-segment" --weights "$ckpt" --input "$img" --out "$bad/m4" --color --palette "$work/no-such-palette.txt"

# Unwritable outputs (CI runs as root, where permission bits do not stop writes: a path under a
# regular file cannot be created by anyone).
touch "$bad/a_file"
# (stdout, where the programs print progress and results before they reach the write, is not
# part of the one-line error here.)
check "train output folder under a file" 1 "cannot create output folder '.*a_file/run'" -- bash -c '"$0" "$@" >/dev/null' \
  "$bin/segnet-train" "${train[@]}" --epochs 1 --out "$bad/a_file/run"
check "evaluate JSON under a file" 1 "a_file.*does not exist" -- bash -c '"$0" "$@" >/dev/null' "$bin/segnet-evaluate" --weights "$ckpt" --list "$data/val/list.txt" --json "$bad/a_file/scores.json"
check "  ... the file is untouched" 0 "" -- test ! -s "$bad/a_file"
# A large image is refused before decoding by the programs' --max-image-pixels (default 16 Mpx).
check "image over --max-image-pixels" 1 "0000.png.*exceeds" -- "$bin/segnet-segment" --weights "$ckpt" --input "$img" \
  --out "$bad/limit" --max-image-pixels 1000
# --- reliability (issue 15): nothing lost, nothing silently overwritten, no hang, early refusals ---
rel="$work/rel" && mkdir -p "$rel"
# set_meta IN OUT KEY VALUE: a copy of checkpoint IN with metadata KEY set to VALUE (the JSON header
# rewritten, its length updated).
set_meta() {
  perl -e 'local $/; open my $f, "<:raw", $ARGV[0] or die; my $d = <$f>; my $n = unpack("Q<", substr($d, 0, 8));
    my ($h, $rest) = (substr($d, 8, $n), substr($d, 8 + $n)); my ($k, $v) = @ARGV[2, 3];
    $h =~ s/"\Q$k\E":"[^"]*"/"$k":"$v"/ or $h =~ s/"__metadata__":\{/"__metadata__":{"$k":"$v",/ or die "no metadata";
    open my $o, ">:raw", $ARGV[1] or die; print $o pack("Q<", length $h), $h, $rest;' "$@"
}
# set_first_value IN OUT TENSOR FLOAT: a copy of IN whose TENSOR starts with FLOAT.
set_first_value() {
  perl -e 'local $/; open my $f, "<:raw", $ARGV[0] or die; my $d = <$f>; my $n = unpack("Q<", substr($d, 0, 8));
    substr($d, 8, $n) =~ /"\Q$ARGV[2]\E":\{[^}]*"data_offsets":\[(\d+),/ or die "no tensor";
    substr($d, 8 + $n + $1, 4) = pack("f<", $ARGV[3]); open my $o, ">:raw", $ARGV[1] or die; print $o $d;' "$@"
}
stays() { cmp -s "$1" "$2"; }  # stays COPY FILE: FILE still has the bytes of COPY
basic=(--model segnet-basic --classes 4 --ignore -1 --balance natural --batch 4 --threads 2 --seed 1)
sgd=("${basic[@]}" --train "$data/train/list.txt")

# 1. A diverging run never saves a non-finite state over a good one, names a checkpoint that
# loads, and exits 1 (at --lr 100 the batch-norm variance overflows at the end of epoch 3).
"$bin/segnet-train" "${sgd[@]}" --epochs 1 --out "$rel/div" >/dev/null 2>&1
check "a diverging resumed run exits 1 naming the last good checkpoint" 1 \
  "training diverged at the end of epoch 3: tensor '.*running_var' holds NaN or Inf; stopped without saving, the last good checkpoint is '$rel/div/last.safetensors'" -- \
  bash -c '"$0" "$@" 2>&1 >/dev/null | grep -v "^epoch\|^segnet-train: segnet-basic\|^segnet-train: resuming"; exit ${PIPESTATUS[0]}' \
  "$bin/segnet-train" "${sgd[@]}" --epochs 4 --lr 100 --out "$rel/div" --resume "$rel/div/last.safetensors"
check "  ... last.safetensors holds epoch 2, the last finite state" 0 "" -- grep -aq '"epoch":"2"' "$rel/div/last.safetensors"
check "  ... segnet-evaluate accepts it" 0 "^G " -- "$bin/segnet-evaluate" --weights "$rel/div/last.safetensors" --list "$data/val/list.txt" --no-bf
check "  ... --resume accepts it" 0 "last checkpoint" -- "$bin/segnet-train" "${sgd[@]}" --epochs 3 --lr 0.01 --out "$rel/div" \
  --resume "$rel/div/last.safetensors"
check "a fresh diverging run exits 1" 1 "training diverged at the end of epoch 2: .*last good checkpoint is '$rel/div_fresh/last.safetensors'" -- \
  bash -c '"$0" "$@" 2>&1 >/dev/null | grep -v "^epoch\|^segnet-train: segnet-basic"; exit ${PIPESTATUS[0]}' \
  "$bin/segnet-train" "${sgd[@]}" --epochs 2 --lr 100 --out "$rel/div_fresh"
check "  ... its last.safetensors holds epoch 1 and loads" 0 "^G " -- bash -c "grep -aq '\"epoch\":\"1\"' '$rel/div_fresh/last.safetensors' &&
  '$bin/segnet-evaluate' --weights '$rel/div_fresh/last.safetensors' --list '$data/val/list.txt' --no-bf"

# 2. Silent overwrites.
mkdir -p "$rel/photos" && cp "$data/val/images/"000[01].png "$rel/photos/"
cp -r "$rel/photos" "$rel/photos_copy"
check "segment --out = the input folder is refused" 2 "--out '.*photos' is the input folder" -- \
  "$bin/segnet-segment" --weights "$ckpt" --input "$rel/photos" --out "$rel/photos"
check "  ... the photos are untouched" 0 "" -- diff -r "$rel/photos" "$rel/photos_copy"
mkdir -p "$rel/stems" && cp "$img" "$rel/stems/a.png" && cp "$repo/tests/fuzz/corpus/image/rgb.jpg" "$rel/stems/a.jpg"
check "inputs a.png and a.jpg are refused" 1 "'.*a.jpg' and '.*a.png' would both write '.*o_stems/a.png'" -- \
  "$bin/segnet-segment" --weights "$ckpt" --input "$rel/stems" --out "$rel/o_stems"
check "  ... no output" 0 "" -- no_output "$rel/o_stems"
mkdir -p "$rel/s1" "$rel/s2" && cp "$img" "$rel/s1/x.png" && cp "$img" "$rel/s2/x.png"
printf '%s\n' "$rel/s1/x.png" "$rel/s2/x.png" > "$rel/same_names.txt"
check "list inputs s1/x.png and s2/x.png are refused" 1 "s1/x.png' and '.*s2/x.png' would both write" -- \
  "$bin/segnet-segment" --weights "$ckpt" --input "$rel/same_names.txt" --out "$rel/o_names"
mkdir -p "$rel/colour" && cp "$img" "$rel/colour/a.png" && cp "$img" "$rel/colour/a_color.png"
check "an input a_color.png and a's colour mask are refused" 1 "would both write '.*a_color.png'" -- \
  "$bin/segnet-segment" --weights "$ckpt" --input "$rel/colour" --out "$rel/o_colour" --color
check "  ... no output" 0 "" -- no_output "$rel/o_colour"
cp "$rel/div/log.csv" "$rel/div_log.csv" && cp "$rel/div/last.safetensors" "$rel/div_last.safetensors"
check "train --out on an existing run is refused" 2 "--out '.*div' holds a training run .*--overwrite" -- \
  "$bin/segnet-train" --model fcn-basic --train "$data/train/list.txt" --classes 4 --ignore -1 --out "$rel/div"
check "  ... its log.csv and last.safetensors are untouched" 0 "" -- bash -c "cmp -s '$rel/div_log.csv' '$rel/div/log.csv' && cmp -s '$rel/div_last.safetensors' '$rel/div/last.safetensors'"
check "train --overwrite starts the run afresh" 0 "last checkpoint" -- "$bin/segnet-train" "${sgd[@]}" --epochs 1 --out "$rel/div" --overwrite
check "  ... log.csv lists epoch 1 once" 0 "" -- test "$(cut -d, -f1 "$rel/div/log.csv" | tr '\n' ' ')" = "epoch 1 "

# 3. A FIFO (or any non-regular file) is refused, never opened (timeout: today's fopen blocks).
mkfifo "$rel/fifo.png" "$rel/fifo.safetensors" "$rel/fifo.txt"
check "FIFO as image" 1 "fifo.png': is a FIFO" -- timeout 20 "$bin/segnet-segment" --weights "$ckpt" --input "$rel/fifo.png" --out "$rel/o_fifo"
check "FIFO as --weights" 1 "fifo.safetensors': is a FIFO" -- timeout 20 "$bin/segnet-segment" --weights "$rel/fifo.safetensors" --input "$img" --out "$rel/o_fifo"
check "FIFO as --palette" 1 "fifo.txt': is a FIFO" -- timeout 20 "$bin/segnet-segment" --weights "$ckpt" --input "$img" --out "$rel/o_fifo" --color --palette "$rel/fifo.txt"
check "FIFO as a list" 1 "fifo.txt': is a FIFO" -- timeout 20 "$bin/segnet-evaluate" --weights "$ckpt" --list "$rel/fifo.txt"
check "FIFO as a training list" 1 "fifo.txt': is a FIFO" -- timeout 20 "$bin/segnet-train" "${basic[@]}" --train "$rel/fifo.txt" --out "$rel/o_fifo_t"
check "  ... no output" 0 "" -- no_output "$rel/o_fifo"

# 4. A tiny file that would need gigabytes: a 4000x4000 all-zero PNG of about 46 KB.
zero_png() {  # zero_png CHANNELS COLOUR_TYPE: a 4000x4000 all-zero 8-bit PNG (3 2: RGB, 1 0: grey labels)
  perl -MCompress::Zlib -e 'my ($c, $type) = @ARGV; my $w = 4000; my $raw = ("\0" x (1 + $c * $w)) x $w;
    sub chunk { my ($t, $d) = @_; pack("N", length $d) . $t . $d . pack("N", crc32($t . $d)) }
    print "\x89PNG\r\n\x1a\n", chunk("IHDR", pack("NNCCCCC", $w, $w, 8, $type, 0, 0, 0)), chunk("IDAT", compress($raw)), chunk("IEND", "")' "$@"
}
zero_png 3 2 > "$rel/zeros.png"
zero_png 1 0 > "$rel/zeros_label.png"
check "a 46 KB 4000x4000 PNG over --max-memory is refused up front" 1 "zeros.png' \(4000x4000\) needs about [0-9.]+ GB of memory, over the 1.0 GB of --max-memory; use --size" -- \
  "$bin/segnet-segment" --weights "$ckpt" --input "$rel/zeros.png" --out "$rel/o_zeros" --max-memory 1G
check "  ... nothing written" 0 "" -- test ! -e "$rel/o_zeros"
printf '%s %s\n' "$rel/zeros.png" "$rel/zeros_label.png" > "$rel/zeros.txt"
check "evaluate refuses the 4000x4000 PNG over --max-memory up front" 1 "zeros.png' \(4000x4000\) needs about [0-9.]+ GB of memory, over the 1.0 GB of --max-memory; use --size" -- \
  "$bin/segnet-evaluate" --weights "$ckpt" --list "$rel/zeros.txt" --json "$rel/zeros.json" --max-memory 1G
check "  ... nothing written" 0 "" -- test ! -e "$rel/zeros.json"
check "a bad --max-memory" 2 "--max-memory: expected a size such as 8G" -- \
  "$bin/segnet-segment" --weights "$ckpt" --input "$img" --out "$rel/o_zeros" --max-memory lots
check "training over --max-memory is refused before it starts" 1 "training segnet-basic on 64x64 images in batches of 4 needs about [0-9]+ MB of memory, over the 1 MB of --max-memory" -- \
  "$bin/segnet-train" "${sgd[@]}" --out "$rel/o_mem" --max-memory 1M
check "  ... no log.csv" 0 "" -- test ! -e "$rel/o_mem/log.csv"

# 5. Checkpoint values that would garble every pixel.
set_meta "$ckpt" "$rel/std0.safetensors" normalization_std "0.2,0,0.2"
check "normalization std 0" 1 "std0.safetensors': normalization std 1 is 0.000000, not a positive number" -- \
  "$bin/segnet-segment" --weights "$rel/std0.safetensors" --input "$img" --out "$rel/o_std"
check "  ... no output" 0 "" -- test ! -e "$rel/o_std"
set_meta "$ckpt" "$rel/nanmean.safetensors" normalization_mean "nan,0,0"
check "NaN normalization mean" 1 "nanmean.safetensors': normalization mean 0 is not a finite number" -- \
  "$bin/segnet-evaluate" --weights "$rel/nanmean.safetensors" --list "$data/val/list.txt"
set_meta "$ckpt" "$rel/infscale.safetensors" normalization_scale "inf"
check "Inf normalization scale" 1 "infscale.safetensors': normalization scale inf is not a positive number" -- \
  "$bin/segnet-segment" --weights "$rel/infscale.safetensors" --input "$img" --out "$rel/o_std"
set_first_value "$ckpt" "$rel/negvar.safetensors" encoder0.1.running_var -1
check "negative running_var" 1 "negvar.safetensors': tensor 'encoder0.1.running_var' holds a negative variance" -- \
  "$bin/segnet-segment" --weights "$rel/negvar.safetensors" --input "$img" --out "$rel/o_std"
check "  ... no output" 0 "" -- no_output "$rel/o_std"

# 6. Too little to evaluate.
printf '# nothing but a comment\n\n' > "$rel/comments.txt"
check "evaluate a comment-only list" 1 "comments.txt' is empty" -- "$bin/segnet-evaluate" --weights "$ckpt" --list "$rel/comments.txt"
: > "$rel/empty.txt"
check "evaluate an empty list" 1 "empty.txt' is empty" -- "$bin/segnet-evaluate" --weights "$ckpt" --list "$rel/empty.txt"
mkdir -p "$rel/pred1" && cp "$work/pred/0000.png" "$rel/pred1/"
check "--pred missing ground-truth files" 1 "--pred '.*pred1' has no prediction for 7 of the 8 ground-truth files .*--allow-missing" -- \
  "$bin/segnet-evaluate" --pred "$rel/pred1" --gt "$data/val/labels" --classes 4 --ignore -1
check "  ... scored with --allow-missing" 0 "images 1," -- \
  "$bin/segnet-evaluate" --pred "$rel/pred1" --gt "$data/val/labels" --classes 4 --ignore -1 --allow-missing

# 7. Leftovers: a killed save's temporaries are cleaned; a resume never lists an epoch twice.
"$bin/segnet-train" "${sgd[@]}" --epochs 1 --out "$rel/log" >/dev/null 2>&1
cp "$rel/log/last.safetensors" "$rel/log/epoch1.safetensors"
"$bin/segnet-train" "${sgd[@]}" --epochs 2 --out "$rel/log" --resume "$rel/log/last.safetensors" >/dev/null 2>&1
printf 'half a checkpoint' > "$rel/log/.last.safetensors.tmp-999999999-0"
check "resume from epoch 1 after epoch 2 was logged" 0 "last checkpoint" -- \
  "$bin/segnet-train" "${sgd[@]}" --epochs 2 --out "$rel/log" --resume "$rel/log/epoch1.safetensors"
check "  ... log.csv lists epochs 1 and 2 once" 0 "" -- test "$(cut -d, -f1 "$rel/log/log.csv" | tr '\n' ' ')" = "epoch 1 2 "
check "  ... the killed save's temporary is gone" 0 "" -- test ! -e "$rel/log/.last.safetensors.tmp-999999999-0"

# 8. Sizes the network cannot take, known before training starts.
check "--size 7x7" 2 "--size is 7x7, a size segnet-basic cannot take" -- "$bin/segnet-train" "${sgd[@]}" --size 7x7 --out "$rel/o_small"
check "  ... no log.csv" 0 "" -- test ! -e "$rel/o_small/log.csv"
printf '%s\n' "$data/train/images/0000.png $data/train/labels/0000.png" \
  "$repo/data/camvid/val/0016E5_07959.png $repo/data/camvid/valannot/0016E5_07959.png" > "$rel/mixed.txt"
check "mixed image sizes with --batch 2" 2 "mixed.txt:[12]: image is .* but .*mixed.txt:[12] is .*; a batch needs one size: give --size HxW, or --batch 1" -- \
  "$bin/segnet-train" --model segnet-basic --train "$rel/mixed.txt" --classes 11 --ignore 11 --balance natural --batch 2 --out "$rel/o_mixed"
check "  ... no log.csv" 0 "" -- test ! -e "$rel/o_mixed/log.csv"

# 9. Crafted --resume metadata: one line naming the file and the key.
last="$rel/log/last.safetensors"
set_meta "$last" "$rel/abc.safetensors" epoch_loss_sum abc
check "non-numeric epoch_loss_sum" 1 "abc.safetensors': metadata 'epoch_loss_sum' is not a finite number \('abc'\)" -- \
  "$bin/segnet-train" "${sgd[@]}" --epochs 5 --out "$rel/r1" --resume "$rel/abc.safetensors"
set_meta "$last" "$rel/huge_epoch.safetensors" epoch 99999999999
check "huge epoch" 1 "huge_epoch.safetensors': metadata 'epoch' is 99999999999, outside 0..1000000" -- \
  "$bin/segnet-train" "${sgd[@]}" --epochs 5 --out "$rel/r2" --resume "$rel/huge_epoch.safetensors"
set_meta "$last" "$rel/neg_epoch.safetensors" epoch -1
check "negative epoch" 1 "neg_epoch.safetensors': metadata 'epoch' is -1" -- \
  "$bin/segnet-train" "${sgd[@]}" --epochs 5 --out "$rel/r3" --resume "$rel/neg_epoch.safetensors"
set_meta "$last" "$rel/neg_batch.safetensors" batch -3
check "negative batch" 1 "neg_batch.safetensors': metadata 'batch' is -3" -- \
  "$bin/segnet-train" "${sgd[@]}" --epochs 5 --out "$rel/r4" --resume "$rel/neg_batch.safetensors"
set_meta "$last" "$rel/nan_count.safetensors" epoch_loss_count nan
check "NaN step count" 1 "nan_count.safetensors': metadata 'epoch_loss_count' is not a finite number" -- \
  "$bin/segnet-train" "${sgd[@]}" --epochs 5 --out "$rel/r5" --resume "$rel/nan_count.safetensors"
check "a resume with nothing left to do" 2 "--epochs 2: '.*last.safetensors' has 2 epochs done already" -- \
  "$bin/segnet-train" "${sgd[@]}" --epochs 2 --out "$rel/log" --resume "$last"
check "  ... no output" 0 "" -- bash -c "! ls '$rel'/r[1-5] 2>/dev/null | grep -q ."

# 10. Messages.
long="$rel/$(printf 'd%.0s' {1..3000})/image.png"
printf '%s %s\n' "$long" "$long" > "$rel/long.txt"
check "a 3000-character path is shortened" 1 "long.txt:1: image '.{20,}\.\.\..*/image.png' (not found|File name too long)" -- \
  "$bin/segnet-train" "${basic[@]}" --train "$rel/long.txt" --out "$rel/o_long"
check "  ... to a short line" 0 "" -- test "$("$bin/segnet-train" "${basic[@]}" --train "$rel/long.txt" --out "$rel/o_long" 2>&1 | wc -c)" -lt 400
mkdir -p "$rel/loop" && cp "$img" "$rel/loop/a.png" && ln -s loop.png "$rel/loop/loop.png"
check "a symlink loop in a folder is skipped with one line" 0 "skipping '.*loop.png': Too many levels of symbolic links" -- \
  "$bin/segnet-segment" --weights "$ckpt" --input "$rel/loop" --out "$rel/o_loop"
check "  ... the other image is segmented" 0 "" -- test -f "$rel/o_loop/a.png"
check "an empty training list" 1 "list file '.*comments.txt' is empty" -- "$bin/segnet-train" "${basic[@]}" --train "$rel/comments.txt" --out "$rel/o_empty"
printf '%s\n' "$data/val/images/0000.png" "$data/val/images/0001.png" > "$rel/one_column.txt"
check "segment a one-column list" 0 "0001.png" -- "$bin/segnet-segment" --weights "$ckpt" --input "$rel/one_column.txt" --out "$rel/o_one"
check "  ... both label maps" 0 "" -- test -f "$rel/o_one/0000.png" -a -f "$rel/o_one/0001.png"

# 11. --precision fp32|bf16|auto: a bad value is one usage line; bf16 runs on any CPU, in bf16
# where the CPU has AVX512-BF16 (the programs' summary names the precision that ran) and in FP32
# with one note line where it has not (SEGNET_CONV=avx2 turns the AVX-512 kernels off, so any
# machine can stand in for one without BF16 units).
if grep -qw avx512_bf16 /proc/cpuinfo && [[ "${SEGNET_CONV:-}" != im2col && "${SEGNET_CONV:-}" != avx2 ]]; then
  bf16_runs=bf16
else
  bf16_runs=fp32
fi
# auto runs bf16 only where it beats FP32: AMX tiles, or AVX512-BF16 on a CPU that is not Intel's.
auto_runs=fp32
if [[ $bf16_runs == bf16 ]] && { { grep -qw amx_bf16 /proc/cpuinfo && [[ "${SEGNET_CONV:-}" != avx512 ]]; } ||
                                 ! grep -q GenuineIntel /proc/cpuinfo; }; then
  auto_runs=bf16
fi
for program in segnet-segment segnet-evaluate segnet-train; do
  check "$program --precision fp16 is refused" 2 "^$program: --precision: 'fp16' is not one of fp32, bf16, auto\$" -- \
    "$bin/$program" --precision fp16
done
check "segment --precision fp32" 0 "^segmented 8 images with segnet-basic on cpu, precision fp32\$" -- \
  "$bin/segnet-segment" --weights "$ckpt" --input "$data/val/images" --out "$rel/o_fp32" --precision fp32
check "segment --precision bf16" 0 "^segmented 8 images with segnet-basic on cpu, precision $bf16_runs\$" -- \
  "$bin/segnet-segment" --weights "$ckpt" --input "$data/val/images" --out "$rel/o_bf16" --precision bf16
check "  ... labels for every image" 0 "" -- test "$(ls "$rel/o_bf16" | wc -l)" -eq 8
check "segment --precision bf16 without BF16 units runs FP32 and says why" 0 \
  "^segnet-segment: --precision bf16 runs in FP32: (SEGNET_CONV=avx2 turns the AVX-512 kernels off|this CPU has no AVX512-BF16 dot products)\$" -- \
  env SEGNET_CONV=avx2 "$bin/segnet-segment" --weights "$ckpt" --input "$img" --out "$rel/o_avx2" --precision bf16
check "  ... and names fp32 in its summary" 0 "precision fp32\$" -- \
  env SEGNET_CONV=avx2 "$bin/segnet-segment" --weights "$ckpt" --input "$img" --out "$rel/o_avx2" --precision bf16
"$bin/segnet-segment" --weights "$ckpt" --input "$img" --out "$rel/o_avx2_fp32" --precision fp32 >/dev/null 2>&1
check "  ... the same label map as --precision fp32 there" 0 "" -- cmp -s "$rel/o_avx2/0000.png" "$rel/o_avx2_fp32/0000.png"
check "segment's default precision is auto" 0 "precision $auto_runs\$" -- \
  "$bin/segnet-segment" --weights "$ckpt" --input "$img" --out "$rel/o_auto"
check "evaluate's default precision is fp32" 0 "^model segnet-basic \(.*\), precision fp32\$" -- \
  "$bin/segnet-evaluate" --weights "$ckpt" --list "$data/val/list.txt" --no-bf
check "evaluate --precision bf16" 0 "^model segnet-basic \(.*\), precision $bf16_runs\$" -- \
  "$bin/segnet-evaluate" --weights "$ckpt" --list "$data/val/list.txt" --no-bf --precision bf16
check "evaluate --precision with --pred/--gt is refused" 2 "--precision applies to running a checkpoint" -- \
  "$bin/segnet-evaluate" --pred "$work/pred" --gt "$data/val/labels" --classes 4 --ignore -1 --precision bf16
check "--precision bf16 with --device cuda is refused" 2 "--precision bf16: the CUDA kernels compute in FP32 only" -- \
  "$bin/segnet-segment" --weights "$ckpt" --input "$img" --out "$rel/o_cuda" --device cuda --precision bf16
check "train --precision bf16" 0 "precision $bf16_runs" -- "$bin/segnet-train" "${sgd[@]}" --epochs 1 --out "$rel/bf16" --precision bf16
check "  ... its checkpoint records the precision" 0 "" -- grep -q "\"precision\":\"$bf16_runs\"" "$rel/bf16/last.safetensors"
check "train's default precision is fp32" 0 "precision fp32" -- "$bin/segnet-train" "${sgd[@]}" --epochs 1 --out "$rel/fp32"
check "  ... its checkpoint records fp32" 0 "" -- grep -q '"precision":"fp32"' "$rel/fp32/last.safetensors"
set_meta "$rel/fp32/last.safetensors" "$rel/fp32/bf16_trained.safetensors" precision bf16
check "a resume in another precision says so in one line" 0 "was trained in bf16; continuing in fp32 \(--precision\)" -- \
  "$bin/segnet-train" "${sgd[@]}" --epochs 2 --out "$rel/fp32" --resume "$rel/fp32/bf16_trained.safetensors"
bench="$bin/../bench/segnet-bench"
if [[ -x "$bench" ]]; then
  check "segnet-bench --precision fp16 is refused" 2 "^segnet-bench: --precision: 'fp16' is not one of fp32, bf16, auto\$" -- \
    "$bench" --precision fp16
  check "segnet-bench --precision bf16 names the precision that ran" 0 "\"precision\": \"$bf16_runs\"" -- \
    "$bench" --size 32x32 --iters 1 --warmup 0 --threads 2 --json --precision bf16
fi

# segnet-export (issue 21): the checkpoint as an ONNX file; its bad input as for the others.
exp="$work/export" && mkdir -p "$exp"
check "export with symbolic sizes" 0 "^wrote .*model.onnx: segnet-basic, 4 classes, opset 13, input batch x 3 x height x width" -- \
  "$bin/segnet-export" --weights "$ckpt" --onnx "$exp/model.onnx"
check "  ... an ONNX model: ir_version 7 first (field 1, varint)" 0 "" -- test "$(head -c 2 "$exp/model.onnx" | od -An -tx1 | tr -d ' ')" = "0807"
check "export static 64x80" 0 "input 1x3x64x80" -- "$bin/segnet-export" --weights "$ckpt" --onnx "$exp/static.onnx" --size 64x80
check "--size and --dynamic together" 2 "^segnet-export: --size and --dynamic exclude each other" -- \
  "$bin/segnet-export" --weights "$ckpt" --onnx "$exp/x.onnx" --size 64x80 --dynamic
check "--size the network cannot take" 2 "^segnet-export: --size 8x8: .*pooling window" -- \
  "$bin/segnet-export" --weights "$ckpt" --onnx "$exp/x.onnx" --size 8x8
check "--onnx missing" 2 "^segnet-export: --onnx is required" -- "$bin/segnet-export" --weights "$ckpt"
check "--onnx is the checkpoint" 2 "is the checkpoint" -- "$bin/segnet-export" --weights "$ckpt" --onnx "$ckpt"
check "--onnx in a missing folder" 1 "no-such-folder.*does not exist" -- \
  "$bin/segnet-export" --weights "$ckpt" --onnx "$exp/no-such-folder/x.onnx"
printf 'kept' > "$exp/kept.onnx"
check "export of a truncated checkpoint" 1 "cut_data.safetensors" -- \
  "$bin/segnet-export" --weights "$bad/cut_data.safetensors" --onnx "$exp/kept.onnx"
check "  ... the existing file is untouched" 0 "" -- test "$(cat "$exp/kept.onnx")" = "kept"
# A model whose ONNX form needs a static size (PSPNet: AdaptiveAvgPool's 2, 3 and 6 bins depend on
# the map's size) without --size is one refusal, before its weights are read; the checkpoint's
# header names it (JSON whitespace pads).
same_length_subst "$ckpt" "$bad/pspnet.safetensors" '"model":"segnet-basic"' '"model":"pspnet"      '
check "symbolic export of a model with a static-size-only layer" 2 "^segnet-export: .*model 'pspnet' has an ONNX form only at a static size \\(its AdaptiveAvgPool<2> layer.*give --size HxW" -- \
  "$bin/segnet-export" --weights "$bad/pspnet.safetensors" --onnx "$exp/pspnet.onnx"
check "  ... and writes nothing" 0 "" -- test ! -e "$exp/pspnet.onnx"

check "no temporary files left behind" 0 "" -- test -z "$(find "$work" -name '*.tmp*')"

echo "$passes passed, $failures failed"
[[ $failures -eq 0 ]]
