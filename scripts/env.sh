# Sourced by the scripts: puts the project's .venv tools (cmake, ninja, python) first on PATH
# and tells CMake where the Halide wheel keeps its package config.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/.venv/bin:$PATH"
halide_dir="$("$root/.venv/bin/python" -c 'import halide, os; print(os.path.join(os.path.dirname(halide.__file__), "lib64", "cmake", "Halide"))')"
export QF_BUILD_DIR="${QF_BUILD_DIR:-$root/build}"
export QF_CMAKE_ARGS="-G Ninja -DCMAKE_BUILD_TYPE=Release -DHalide_DIR=$halide_dir -DQF_PYTHON=$root/.venv/bin/python"
