#!/usr/bin/env bash
# Installs what segnet needs to build and test, from Debian's archive, when it is missing.
#   scripts/deps.sh            # C++ toolchain, CMake, stb, doctest
#   scripts/deps.sh --bench    # also Debian's PyTorch and NumPy for bench/compare_pytorch.py
#   scripts/deps.sh --plots    # also Debian's matplotlib for scripts/plot_training_log.py
#   scripts/deps.sh --serve    # also cpp-httplib for segnet-serve (docs/serve.md)
#   scripts/deps.sh --browser  # also chromium and Node.js for serve_browser (then: cd tests/browser && npm ci)
#   scripts/deps.sh --mpi      # also OpenMPI for data-parallel training (segnet-train-mpi, test_distributed)
# (flags combine: scripts/deps.sh --bench --plots)
set -euo pipefail
packages=(g++ cmake make python3 libstb-dev doctest-dev)
for flag in "$@"; do
  case "$flag" in
    --bench) packages+=(python3-torch python3-numpy) ;;
    --plots) packages+=(python3-matplotlib) ;;
    --serve) packages+=(libcpp-httplib-dev pkg-config) ;;
    # npm only where no npm is on PATH: NodeSource's nodejs package brings its own and conflicts with Debian's.
    --browser) packages+=(chromium nodejs); command -v npm >/dev/null || packages+=(npm) ;;
    --mpi) packages+=(libopenmpi-dev openmpi-bin) ;;
    *) echo "scripts/deps.sh: unknown flag '$flag' (expected --bench, --plots, --serve, --browser or --mpi)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then exit 0; fi
echo "installing: ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
