#!/usr/bin/env bash
# scripts/run_experiments.py end to end on the committed shapes set: a two-stage plan (small
# images, then their own size) for two models trains, evaluates and writes the table; a rerun
# trains nothing; a bad plan is one line with status 2.
#   run_experiments_test.sh PYTHON BUILD_DIR DATA_DIR
set -uo pipefail
python="$1" build="$2" data="$3"
runner="$(dirname "$0")/../../scripts/run_experiments.py"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL $1"; failures=$((failures + 1)); }

cat > "$work/plan.json" <<'PLAN'
{"title": "shapes", "train": "train/list.txt", "val": "val/list.txt", "epochs": 3,
 "stages": [{"until": 2, "size": "32x32"}, {"until": 3}],
 "args": ["--classes", "4", "--ignore", "-1", "--balance", "natural", "--optimizer", "adam", "--lr", "0.01",
          "--threads", "2", "--seed", "1", "--val-size", "native", "--no-bf"],
 "runs": [{"name": "basic", "model": "segnet-basic"}, {"name": "fcn", "model": "fcn-basic"}],
 "paper": {"basic": {"G": 82.7, "C": 62.0, "mIoU": 47.7, "BF": 35.78}},
 "bench": {"size": "64x64", "threads": 1, "iters": 1}}
PLAN
out="$work/out"
"$python" "$runner" "$work/plan.json" --data "$data" --out "$out" --bin "$build" > "$work/first.txt" 2>&1 ||
  { fail "first run: exit status $?"; tail -5 "$work/first.txt"; }
# two stages per run: the first stops after epoch 2 at 32x32, the second resumes to 3 at 64x64
[[ $(grep -c -- '--stop-after 2 --size 32x32' "$work/first.txt") -eq 2 ]] || fail "stage 1 is not run once per model"
[[ $(grep -c -- '--resume .*/last.safetensors' "$work/first.txt") -eq 2 ]] || fail "stage 2 does not resume"
[[ $(wc -l < "$out/basic/log.csv") -eq 4 ]] || fail "basic/log.csv does not have 3 epochs"
grep -qE '^\| basic \| 1\.416 \| - \| [0-9]+ \| 3/3 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| 82\.70 ' \
  "$out/table.md" || { fail "table.md lacks the basic row"; cat "$out/table.md"; }
grep -qE '^\| fcn \| 0\.[0-9]+ \| - \|' "$out/table.md" || fail "table.md lacks the fcn row"
"$python" -c "import json,sys; t=json.load(open(sys.argv[1])); r=t['runs'][0]; assert r['val']['images'] == 8 and r['train']['images'] > 0, r" \
  "$out/table.json" || fail "table.json lacks the val and train scores"
# the selected checkpoint's val scores are segnet-evaluate's
"$build/examples/segnet-evaluate" --weights "$out/basic/best.safetensors" --list "$data/val/list.txt" --no-bf \
  --json "$work/direct.json" > /dev/null 2>&1
cmp -s <(grep global_accuracy "$work/direct.json") <(grep global_accuracy "$out/basic/val.json") ||
  fail "val.json differs from segnet-evaluate on best.safetensors"
"$python" "$runner" "$work/plan.json" --data "$data" --out "$out" --bin "$build" > "$work/second.txt" 2>&1 ||
  fail "rerun: exit status $?"
grep -q -- 'segnet-train\|segnet-evaluate' "$work/second.txt" && fail "a rerun of a finished plan trains or evaluates again"
echo '{"train": "train/list.txt", "epochs": 3, "stages": [{"until": 2}], "runs": [{"name": "a", "model": "segnet-basic"}]}' > "$work/bad.json"
msg="$("$python" "$runner" "$work/bad.json" --data "$data" --out "$work/bad" --bin "$build" 2>&1)"
[[ $? -eq 2 && $(grep -c . <<<"$msg") -eq 1 && "$msg" == *"bad.json: the last stage must end at 'epochs' (3), not 2"* ]] ||
  fail "a bad plan: '$msg'"
[[ -e "$work/bad" ]] && fail "a bad plan created its output folder"
if [[ $failures -ne 0 ]]; then echo "$failures failure(s)"; exit 1; fi
echo "run_experiments: all checks passed"
