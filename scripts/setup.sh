#!/usr/bin/env bash
# Installs what qforge needs, idempotently: Debian packages with apt-get, and
# the pinned Python tools (Halide, CMake, ninja, numpy, gguf; CUTLASS's headers) into the
# project-local virtual environment .venv.
#   setup.sh         what the main job needs (build the library and the CLI)
#   setup.sh tests   also what the tests and benchmarks need: GoogleTest,
#                    Google Benchmark, the aarch64 cross toolchain and qemu,
#                    clang with its sanitizer and libFuzzer runtimes
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

apt_packages=(build-essential python3-venv nlohmann-json3-dev libcli11-dev)
if [ "${1:-}" = "tests" ]; then
  apt_packages+=(libgtest-dev libbenchmark-dev googletest g++-aarch64-linux-gnu qemu-user clang libclang-rt-14-dev)
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

stamp=.venv/.requirements.stamp
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
if ! cat requirements.txt requirements-headers.txt | cmp -s - "$stamp" 2>/dev/null; then
  echo "setup: installing pinned Python packages"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-headers.txt
  cat requirements.txt requirements-headers.txt > "$stamp"
fi
