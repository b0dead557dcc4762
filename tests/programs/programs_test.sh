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
check "no temporary files left behind" 0 "" -- test -z "$(find "$work" -name '*.tmp*')"

echo "$passes passed, $failures failed"
[[ $failures -eq 0 ]]
