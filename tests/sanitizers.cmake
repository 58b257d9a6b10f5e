# The sanitizer builds, driven from the host build as the ARM64 one is:
# clang builds the runtime, the CLI's commands and the tests twice more,
# linking the kernels this build generated (QF_KERNELS_FROM):
#   asan/  ASan + UBSan: every unit test, the CLI end to end (its bad-input
#          table included), and each fuzzer (tests/fuzz) for QF_FUZZ_SECONDS
#          from seeds the tests write;
#   tsan/  ThreadSanitizer: the layer concurrency tests.
# Their tests join this build's ctest run with an "asan/" or "tsan/" prefix.
option(QF_SANITIZERS "Build and run the ASan+UBSan and TSan test builds, and the fuzzers (the test command turns it on)" OFF)
if (NOT QF_SANITIZERS)
    return ()
endif ()
set(QF_FUZZ_SECONDS 30 CACHE STRING "Seconds each fuzzer runs in the test command (scripts/fuzz.sh runs them longer)")

find_program(QF_CLANGXX NAMES clang++ clang++-14)
if (QF_CLANGXX)
    execute_process(COMMAND ${QF_CLANGXX} -print-resource-dir OUTPUT_VARIABLE clang_resources OUTPUT_STRIP_TRAILING_WHITESPACE)
endif ()
if (NOT QF_CLANGXX OR NOT EXISTS ${clang_resources}/lib/linux/libclang_rt.fuzzer-x86_64.a)
    message(FATAL_ERROR "qforge: the sanitizer builds need clang and its runtimes (Debian's clang and libclang-rt-14-dev; "
                        "scripts/setup.sh tests installs them), or configure with -DQF_SANITIZERS=OFF")
endif ()

include(ExternalProject)
set(sanitizer_includes "")
foreach (kind IN ITEMS asan tsan)
    if (kind STREQUAL "asan")
        set(flags address,undefined)
    else ()
        set(flags thread)
    endif ()
    set(dir ${PROJECT_BINARY_DIR}/${kind})
    ExternalProject_Add(qforge_${kind}
        SOURCE_DIR ${PROJECT_SOURCE_DIR}
        BINARY_DIR ${dir}
        CMAKE_GENERATOR ${CMAKE_GENERATOR}
        CMAKE_ARGS -DCMAKE_CXX_COMPILER=${QF_CLANGXX}
                   -DCMAKE_BUILD_TYPE=RelWithDebInfo
                   -DHalide_DIR=${Halide_DIR}
                   -DQF_SANITIZE=${flags}
                   -DQF_KERNELS_FROM=${PROJECT_BINARY_DIR}
                   -DQF_PYTHON=${QF_PYTHON}
                   -DQF_FUZZ_SECONDS=${QF_FUZZ_SECONDS}
                   -DQF_BENCH=OFF -DQF_ARM64=OFF -DQF_SANITIZERS=OFF -DBUILD_TESTING=ON
                   -DQF_CUTLASS=OFF  # nvcc builds it in the main build only
        BUILD_ALWAYS ON
        INSTALL_COMMAND ""
        DEPENDS qforge_cli)  # links every kernel library, so all exist
    string(APPEND sanitizer_includes "subdirs(\"${dir}\")\n")
endforeach ()
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/sanitizer_tests.cmake CONTENT "${sanitizer_includes}")
set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY TEST_INCLUDE_FILES ${PROJECT_BINARY_DIR}/sanitizer_tests.cmake)
