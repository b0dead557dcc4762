#!/usr/bin/env bash
# GPU twin of tests/programs/programs_test.sh: segnet-train-cuda / -evaluate-cuda / -segment-cuda
# with --device cuda on the committed shapes set, the checkpoint read back on the CPU, and
# `segnet-train --device cuda` handed to segnet-train-cuda; with BENCH_DIR, segnet-bench-cuda and
# `segnet-bench --device cuda` (inference and training step, JSON). Without a CUDA device it checks
# the one-line error of --device cuda, then exits 77 (CTest: Skipped).
#   programs_cuda.sh BIN_DIR DATA_DIR PROBE [BENCH_DIR]
set -uo pipefail
bin="$1"
data="$2"
probe="$3"
bench="${4:-}"
if [[ -n "$bench" && ! -x "$bench/segnet-bench-cuda" ]]; then
  echo "note: $bench/segnet-bench-cuda is not built: the segnet-bench checks are left out"
  bench=""
fi
bench_args=(--model segnet-basic --size 90x120 --iters 2 --warmup 1 --json)
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
  echo "ok   $name"
  passes=$((passes + 1))
}

train=(--model segnet-basic --train "$data/train/list.txt" --val "$data/val/list.txt" --classes 4 --ignore -1
       --balance natural --batch 4 --optimizer adam --lr 0.01 --threads 2 --seed 1)

if ! "$probe"; then
  check "no device: one-line error" 1 "no CUDA device is visible" -- "$bin/segnet-train-cuda" "${train[@]}" \
    --device cuda --epochs 1 --out "$work/none"
  check "no device: segnet-train hands --device cuda to segnet-train-cuda" 1 "no CUDA device is visible" -- \
    "$bin/segnet-train" "${train[@]}" --device cuda --epochs 1 --out "$work/none"
  if [[ -n "$bench" ]]; then
    check "no device: segnet-bench-cuda one-line error" 1 "^segnet-bench-cuda: --device cuda: no CUDA device is visible" -- \
      "$bench/segnet-bench-cuda" --device cuda "${bench_args[@]}"
    check "no device: segnet-bench hands --device cuda to segnet-bench-cuda" 1 "no CUDA device is visible" -- \
      "$bench/segnet-bench" --device cuda "${bench_args[@]}"
  fi
  [[ $failures -eq 0 ]] || exit 1
  exit 77
fi

check "train 2 epochs on the GPU" 0 "best: G" -- "$bin/segnet-train-cuda" "${train[@]}" --device cuda --epochs 2 --out "$work/run"
check "resume on the GPU to 3 epochs" 0 "resuming" -- "$bin/segnet-train-cuda" "${train[@]}" --device cuda --epochs 3 \
  --out "$work/run" --resume "$work/run/last.safetensors"
check "log.csv has 3 rows" 0 "" -- test "$(wc -l < "$work/run/log.csv")" -eq 4
check "evaluate on the GPU" 0 "^G [0-9.]+  C [0-9.]+  mIoU [0-9.]+  BF [0-9.]+" -- "$bin/segnet-evaluate-cuda" \
  --device cuda --weights "$work/run/best.safetensors" --list "$data/val/list.txt" --json "$work/gpu.json"
check "evaluate the same checkpoint on the CPU" 0 "^G " -- "$bin/segnet-evaluate" \
  --weights "$work/run/best.safetensors" --list "$data/val/list.txt" --json "$work/cpu.json"
g_gpu="$(grep -oE '"global_accuracy": [0-9.]+' "$work/gpu.json" | grep -oE '[0-9.]+$')"
g_cpu="$(grep -oE '"global_accuracy": [0-9.]+' "$work/cpu.json" | grep -oE '[0-9.]+$')"
check "GPU and CPU agree on G ($g_gpu vs $g_cpu)" 0 "" -- awk -v a="$g_gpu" -v b="$g_cpu" \
  'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 0.5) }'
check "the GPU training loss fell (epoch 3 < epoch 1)" 0 "" -- awk -F, 'NR == 2 { first = $3 } NR == 4 { last = $3 }
  END { exit !(NR == 4 && last < first) }' "$work/run/log.csv"
check "segment on the GPU" 0 "0007.png" -- "$bin/segnet-segment-cuda" --device cuda \
  --weights "$work/run/best.safetensors" --input "$data/val/images" --out "$work/pred_gpu"
check "segment on the CPU" 0 "0007.png" -- "$bin/segnet-segment" \
  --weights "$work/run/best.safetensors" --input "$data/val/images" --out "$work/pred_cpu"
check "GPU and CPU label PNGs agree (G >= 99.5)" 0 "" -- bash -c "\"$bin/segnet-evaluate\" --pred \"$work/pred_gpu\" \
  --gt \"$work/pred_cpu\" --classes 4 --ignore -1 --no-bf | awk '/^G /{ exit !(\$2 >= 99.5) }'"
check "CPU-trained checkpoint resumes on the GPU" 0 "resuming" -- bash -c "\"$bin/segnet-train\" ${train[*]} --epochs 1 \
  --out \"$work/cpu_run\" >/dev/null 2>&1 && \"$bin/segnet-train-cuda\" ${train[*]} --device cuda --epochs 2 \
  --out \"$work/cpu_run\" --resume \"$work/cpu_run/last.safetensors\""
check "segnet-train --device cuda runs segnet-train-cuda" 0 "on the GPU" -- "$bin/segnet-train" "${train[@]}" \
  --device cuda --epochs 1 --out "$work/handed"

if [[ -n "$bench" ]]; then
  json_keys='"median_ms": [0-9.]+, "min_ms": [0-9.]+, .*"peak_rss_mb": [0-9.]+, "device": "cuda", .*"gpu_peak_mb": [0-9.]+'
  check "segnet-bench-cuda inference" 0 "\"mode\": \"infer\".*$json_keys" -- "$bench/segnet-bench-cuda" --device cuda \
    "${bench_args[@]}"
  check "segnet-bench --device cuda training step (handed to segnet-bench-cuda)" 0 "\"mode\": \"train\".*$json_keys" -- \
    "$bench/segnet-bench" --device cuda --mode train --batch 2 "${bench_args[@]}"
  check "segnet-bench-cuda --layers" 0 "loss \+ optimizer" -- "$bench/segnet-bench-cuda" --mode train \
    --model segnet-basic --size 90x120 --iters 1 --warmup 1 --layers
fi

echo "$passes passed, $failures failed"
[[ $failures -eq 0 ]]
