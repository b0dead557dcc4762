#!/usr/bin/env bash
# Builds the libFuzzer targets with Debian's clang (ASan + UBSan) and runs each for a bounded
# time from its committed seed corpus. Exit status 0: no crash; 1: a crash (the input is saved
# under BUILD_DIR/artifacts/ and named in the output); skipped with a message (status 0) when
# clang or its fuzzer runtime (libclang-rt-*-dev) is missing.
#   tests/fuzz/run.sh [BUILD_DIR] [SECONDS_PER_TARGET]      # defaults: build-fuzz 20
# SEGNET_FUZZ_CXX picks the compiler; SEGNET_FUZZ_EXTRA_INCLUDE puts a folder before include/.
# A crash becomes a regression test: copy the artifact into tests/fuzz/corpus/<target>/, fix the
# bug; the CTest tests fuzz_replay.<target> replay the whole corpus on every build.
set -uo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build-fuzz}"
seconds="${2:-20}"
cxx="${SEGNET_FUZZ_CXX:-clang++}"
targets=(${SEGNET_FUZZ_TARGETS:-safetensors list_file image})

if ! command -v "$cxx" >/dev/null; then
  echo "fuzz: skipped: $cxx not found (apt-get install clang libclang-rt-dev)"; exit 0
fi
mkdir -p "$build/artifacts"
probe="$build/probe.cpp"
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$probe"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe" -o "$build/probe" 2>"$build/probe.log"; then
  echo "fuzz: skipped: $cxx cannot link -fsanitize=fuzzer (install libclang-rt-dev): $(head -1 "$build/probe.log")"; exit 0
fi

flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -fsanitize-recover=nonnull-attribute
       ${SEGNET_FUZZ_EXTRA_INCLUDE:+-I$SEGNET_FUZZ_EXTRA_INCLUDE} -Iinclude -isystem /usr/include/stb)
export UBSAN_OPTIONS="suppressions=$PWD/tests/fuzz/ubsan.supp:print_stacktrace=1:${UBSAN_OPTIONS:-}"
status=0
for t in "${targets[@]}"; do
  exe="$build/fuzz_$t"
  if [[ ! -x "$exe" || "tests/fuzz/fuzz_$t.cpp" -nt "$exe" || -n "$(find include -newer "$exe" -name '*.hpp' -print -quit)" ]]; then
    echo "fuzz: building fuzz_$t"
    if ! "$cxx" "${flags[@]}" "tests/fuzz/fuzz_$t.cpp" -o "$exe" 2>"$build/fuzz_$t.build.log"; then
      grep -m3 -E "error" "$build/fuzz_$t.build.log"
      echo "fuzz: FAIL: fuzz_$t does not build"; status=1; continue
    fi
  fi
  scratch="$build/corpus-$t"
  mkdir -p "$scratch"
  dict=()
  [[ -f "tests/fuzz/$t.dict" ]] && dict=("-dict=tests/fuzz/$t.dict")
  log="$build/fuzz_$t.log"
  # New inputs go to the scratch folder (first), the committed corpus is only read.
  "$exe" "$scratch" "tests/fuzz/corpus/$t" "${dict[@]}" -max_total_time="$seconds" -max_len=65536 \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" >"$log" 2>&1
  rc=$?
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  if [[ $rc -ne 0 ]]; then
    echo "fuzz: FAIL: fuzz_$t (exit $rc); the input is $(grep -oE "$build/artifacts/[^ ]+" "$log" | tail -1)"
    grep -E 'ERROR|runtime error|SUMMARY' "$log" | head -5
    status=1
  else
    echo "fuzz: ok   fuzz_$t: ${runs:-?} runs in ${seconds}s, $cov, no crash"
  fi
done
exit $status
