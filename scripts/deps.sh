#!/usr/bin/env bash
# Installs what segnet needs to build and test, from Debian's archive, when it is missing.
#   scripts/deps.sh            # C++ toolchain, CMake, stb, doctest
#   scripts/deps.sh --bench    # also Debian's PyTorch and NumPy for bench/compare_pytorch.py
#   scripts/deps.sh --plots    # also Debian's matplotlib for scripts/plot_training_log.py
#   scripts/deps.sh --serve    # also cpp-httplib for segnet-serve (docs/serve.md)
#   scripts/deps.sh --browser  # also chromium and Node.js for serve_browser, and puppeteer-core
#                              # (npm ci in tests/browser)
#   scripts/deps.sh --onnx     # also Debian's onnx (checker) and OpenCV, and Node.js, for the ONNX export's
#                              # tests, and onnxruntime-node (npm ci --ignore-scripts in tests/interop)
#   scripts/deps.sh --mpi      # also OpenMPI for data-parallel training (segnet-train-mpi, test_distributed)
#   scripts/deps.sh --all      # everything the test suite can use (--bench --serve --browser --onnx --mpi):
#                              # what CI installs, so that no test is skipped for a missing package
# (flags combine: scripts/deps.sh --bench --plots)
set -euo pipefail
packages=(g++ cmake make python3 libstb-dev doctest-dev)
npm_folders=()  # tests/<folder> whose package-lock.json npm installs (the npm registry)
flags=("$@")
for flag in "$@"; do
  if [[ "$flag" == --all ]]; then flags+=(--bench --serve --browser --onnx --mpi); fi
done
for flag in "${flags[@]}"; do
  case "$flag" in
    --bench) packages+=(python3-torch python3-numpy) ;;
    --plots) packages+=(python3-matplotlib) ;;
    --serve) packages+=(libcpp-httplib-dev pkg-config) ;;
    # npm only where no npm is on PATH: NodeSource's nodejs package brings its own and conflicts with Debian's.
    --browser) packages+=(chromium nodejs); command -v npm >/dev/null || packages+=(npm); npm_folders+=(browser) ;;
    --onnx) packages+=(python3-onnx python3-opencv nodejs); command -v npm >/dev/null || packages+=(npm); npm_folders+=(interop) ;;
    --all) ;;
    --mpi) packages+=(libopenmpi-dev openmpi-bin) ;;
    *) echo "scripts/deps.sh: unknown flag '$flag' (expected --bench, --plots, --serve, --browser, --onnx, --mpi or --all)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The tests' npm packages, pinned by package-lock.json, when not installed yet. onnxruntime-node's
# install script only downloads GPU binaries (from GitHub); its CPU runtime ships in the package.
for folder in $(printf '%s\n' "${npm_folders[@]}" | sort -u); do
  dir="$(dirname "$0")/../tests/$folder"
  if [[ ! -d "$dir/node_modules" ]]; then
    echo "npm ci in tests/$folder"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  fi
done
