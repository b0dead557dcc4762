#!/usr/bin/env bash
# Installs what segnet needs to build and test, from Debian's archive, when it is missing.
#   scripts/deps.sh            # C++ toolchain, CMake, Eigen 3.4, stb, doctest
#   scripts/deps.sh --bench    # also Debian's PyTorch and NumPy for bench/compare_pytorch.py
set -euo pipefail
packages=(g++ cmake make libeigen3-dev libstb-dev doctest-dev)
if [[ "${1:-}" == "--bench" ]]; then packages+=(python3-torch python3-numpy); fi
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
