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
check "no temporary files left behind" 0 "" -- test -z "$(find "$work" -name '*.tmp*')"

echo "$passes passed, $failures failed"
[[ $failures -eq 0 ]]
