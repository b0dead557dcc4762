#!/usr/bin/env bash
# Installs what segnet needs to build and test, from Debian's archive, when it is missing.
#   scripts/deps.sh            # C++ toolchain, CMake, stb, doctest
#   scripts/deps.sh --bench    # also Debian's PyTorch and NumPy for bench/compare_pytorch.py
#   scripts/deps.sh --plots    # also Debian's matplotlib for scripts/plot_training_log.py
#   scripts/deps.sh --onnx     # also what the ONNX export's tests run the files in: Debian's onnx
#                              # (checker) and OpenCV, Node.js, and npm's onnxruntime-node in tests/interop
# (flags combine: scripts/deps.sh --bench --plots)
set -euo pipefail
packages=(g++ cmake make python3 libstb-dev doctest-dev)
onnx=0
# onnxruntime-node from package-lock.json; --ignore-scripts: its install script only fetches the GPU
# build from GitHub, the CPU runtime the tests use is in the package.
install_onnxruntime() {
  if [[ $onnx -eq 1 && ! -d "$(dirname "$0")/../tests/interop/node_modules/onnxruntime-node" ]]; then
    (cd "$(dirname "$0")/../tests/interop" && npm ci --ignore-scripts --no-audit --no-fund)
  fi
}
for flag in "$@"; do
  case "$flag" in
    --bench) packages+=(python3-torch python3-numpy) ;;
    --plots) packages+=(python3-matplotlib) ;;
    --onnx) packages+=(python3-onnx python3-opencv); onnx=1
            command -v npm >/dev/null || packages+=(nodejs npm) ;;  # a Node.js of your own is kept
    *) echo "scripts/deps.sh: unknown flag '$flag' (expected --bench, --plots or --onnx)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then install_onnxruntime; exit 0; fi
echo "installing: ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_onnxruntime
