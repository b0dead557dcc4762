#!/usr/bin/env bash
# segnet-train under mpirun -np 2 (docs/distributed.md): it hands itself to segnet-train-mpi; rank
# 0 alone prints and writes; a bad image stops both ranks with one line; SIGINT to one rank stops
# both with the state saved, and one process resumes it.
#   mpi_train_test.sh MPIEXEC BIN_DIR DATA_DIR
set -uo pipefail
mpiexec="$1"
bin="$2"
data="$3"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
failures=0
fail() { echo "FAIL $1"; failures=$((failures + 1)); }
ok() { echo "ok   $1"; }
mpirun2=("$mpiexec" -np 2 --oversubscribe)
train=(--model segnet-basic --classes 4 --ignore -1 --balance natural --batch 4 --seed 1)
list=(--train "$data/train/list.txt")

out="$("${mpirun2[@]}" "$bin/segnet-train" "${train[@]}" "${list[@]}" --threads 1 --epochs 1 --out "$work/run" --sync-bn 2>&1)"
status=$?
if [[ $status -eq 0 && -f "$work/run/last.safetensors" && $(grep -c "^segnet-train: segnet-basic" <<<"$out") -eq 1 ]] &&
   grep -q "2 ranks, all-reduce wait" <<<"$out"; then
  ok "2 ranks train; rank 0 alone prints the banner and writes --out"
else
  fail "2 ranks train (status $status)"; echo "$out" | tail -5
fi

# A corrupt image: every rank meets it checking the list up front; one line, from rank 0.
mkdir -p "$work/bad" && cp -r "$data/train/." "$work/bad/"
first="$(awk '!/^#/ && NF {print $1; exit}' "$work/bad/list.txt")"
echo "not a png" > "$work/bad/$first"
out="$("${mpirun2[@]}" "$bin/segnet-train" "${train[@]}" --threads 1 --train "$work/bad/list.txt" --out "$work/badrun" 2>&1)"
status=$?
lines="$(grep -c "^segnet-train" <<<"$out")"
if [[ $status -eq 1 && $lines -eq 1 ]] && grep -q "^segnet-train: .*$(basename "$first").*not a PNG" <<<"$out"; then
  ok "a bad image stops both ranks with one line"
else
  fail "bad image (status $status, $lines lines)"; echo "$out" | tail -8
fi

# SIGINT to rank 1 alone: both stop at the same step, rank 0 saves, each exits 130.
"${mpirun2[@]}" "$bin/segnet-train" "${train[@]}" "${list[@]}" --threads 1 --epochs 1000 --out "$work/int" > "$work/int.log" 2>&1 &
launcher=$!
for _ in $(seq 1 120); do grep -q "^epoch 1/1000: " "$work/int.log" && break; sleep 0.5; done
rank1="$(pgrep -f "segnet-train-mpi.*$work/int" | tail -1)"
[[ -n "$rank1" ]] && kill -INT "$rank1"
wait "$launcher"
if grep -q "stopped at epoch" "$work/int.log" && [[ -f "$work/int/last.safetensors" ]]; then
  ok "SIGINT to one rank stops both; rank 0 saves"
else
  fail "SIGINT to one rank"; tail -5 "$work/int.log"
fi
out="$("$bin/segnet-train" --resume "$work/int/last.safetensors" "${train[@]}" "${list[@]}" --threads 2 --epochs 4 --out "$work/int" 2>&1)"
if [[ $? -eq 0 ]] && grep -q "resuming" <<<"$out"; then
  ok "one process resumes a run of 2 ranks"
else
  fail "resume with 1 process"; echo "$out" | tail -5
fi

echo "$failures failed"
[[ $failures -eq 0 ]]
