#!/usr/bin/env bash
# Installs and builds what the comparison needs beside qforge, idempotently:
# OpenBLAS from Debian (the eager-dequant baseline's GEMM), matplotlib into
# .venv (the charts), and ggml's CPU library built from the llama.cpp sources
# that the pinned llama-cpp-python source distribution on PyPI ships. All of
# it lands in bench/.peers/ (ignored by git); the tests never need it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash scripts/setup.sh
source scripts/env.sh

LLAMA_CPP_PYTHON_VERSION=0.3.16   # vendors llama.cpp with ggml's CPU repacking (Q4_0, Q4_K)
LLAMA_CPP_PYTHON_SHA256=34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6
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
  # The sdist file itself, from PyPI's simple index (pip download would
  # build its metadata first), checked against the pinned digest.
  python - "$peers" "$LLAMA_CPP_PYTHON_VERSION" "$LLAMA_CPP_PYTHON_SHA256" <<'PY'
import hashlib, json, sys, urllib.request
dest, version, sha = sys.argv[1:4]
req = urllib.request.Request("https://pypi.org/simple/llama-cpp-python/",
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
files = json.load(urllib.request.urlopen(req))["files"]
url = next(f["url"] for f in files if f["filename"] == f"llama_cpp_python-{version}.tar.gz")
data = urllib.request.urlopen(url).read()
if hashlib.sha256(data).hexdigest() != sha:
    sys.exit(f"peers: {url} does not match the pinned sha256")
open(f"{dest}/llama_cpp_python-{version}.tar.gz", "wb").write(data)
PY
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
