#!/usr/bin/env bash
# Installs the build into a temporary prefix, builds examples/hello_linear
# against the installed package in a clean environment (no Halide on any
# path), runs it, and checks that it links no Halide or LLVM library.
set -euo pipefail
build="$1"; src="$2"; cmake_bin="$3"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$cmake_bin" --install "$build" --prefix "$tmp/prefix" > /dev/null
env -i PATH=/usr/bin:/bin "$cmake_bin" -S "$src/examples/hello_linear" -B "$tmp/app" -G Ninja \
    -DCMAKE_MAKE_PROGRAM="$(command -v ninja)" -DCMAKE_PREFIX_PATH="$tmp/prefix" > /dev/null
env -i PATH=/usr/bin:/bin "$cmake_bin" --build "$tmp/app" | grep -v "^\[" || true
test -x "$tmp/app/hello_linear"
if ldd "$tmp/app/hello_linear" | grep -Ei "halide|llvm"; then
    echo "hello_linear links Halide or LLVM"; exit 1
fi
if grep -rqi "halide" "$tmp/prefix/lib/cmake"; then
    echo "the package config mentions Halide"; exit 1
fi
"$tmp/app/hello_linear"
