#!/usr/bin/env bash
# Installs and builds what the comparison needs beside qforge, idempotently:
# OpenBLAS from Debian (the eager-dequant baseline's GEMM), matplotlib into
# .venv (the charts), and ggml's CPU library built from the llama.cpp sources
# that the pinned llama-cpp-python source distribution on PyPI ships. All of
# it lands in bench/.peers/ (ignored by git); the tests never need it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash scripts/setup.sh tests
source scripts/env.sh

# Must match bench/peers/ggml-source.txt: it vendors llama.cpp with ggml's CPU repacking (Q4_0, Q4_K).
LLAMA_CPP_PYTHON_VERSION=0.3.16
peers="$root/bench/.peers"
mkdir -p "$peers"

if ! dpkg-query -W -f='${Status}' libopenblas-dev 2>/dev/null | grep -q "install ok installed"; then
  echo "peers: installing libopenblas-dev"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libopenblas-dev
fi

if ! cmp -s bench/peers/requirements.txt "$peers/.requirements.stamp" 2>/dev/null; then
  python -m pip install -q --disable-pip-version-check -r bench/peers/requirements.txt
  cp bench/peers/requirements.txt "$peers/.requirements.stamp"
fi

src="$peers/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
if [ ! -d "$src/vendor/llama.cpp/ggml" ]; then
  echo "peers: fetching the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION source distribution"
  # pip's own client fetches the sdist (it builds no wheel, only reads metadata)
  # and checks it against the digest pinned in ggml-source.txt.
  python -m pip download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python --require-hashes \
    -r bench/peers/ggml-source.txt -d "$peers"
  tar -xzf "$peers/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" -C "$peers"
fi

ggml_build="$peers/ggml-build"
if [ ! -f "$ggml_build/src/libggml-cpu.a" ]; then
  echo "peers: building ggml's CPU library (native, OpenMP, repacking on)"
  # The sdist leaves out ggml.pc.in, which only ggml's pkg-config install reads.
  touch "$src/vendor/llama.cpp/ggml/ggml.pc.in"
  cmake -S "$src/vendor/llama.cpp/ggml" -B "$ggml_build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DGGML_CPU_REPACK=ON \
    -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF > "$peers/ggml-configure.log"
  cmake --build "$ggml_build" --target ggml-cpu ggml-base ggml > "$peers/ggml-build.log"
fi
echo "peers: ggml at $ggml_build, sources $src"
