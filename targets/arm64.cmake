# The ARM64 build, driven from the x86-64 one: the host build's generators
# (exported by add_halide_generator) compile the arm64 targets, Debian's
# aarch64 toolchain builds the runtime and the tests, and the tests join this
# build's ctest run under qemu-aarch64 with an "aarch64/" prefix.
option(QF_ARM64 "Cross-build the ARM64 kernels and run their tests under qemu-aarch64 (the test command turns it on)" OFF)
if (NOT QF_ARM64)
    return ()
endif ()

find_program(QF_AARCH64_CXX aarch64-linux-gnu-g++)
find_program(QF_QEMU_AARCH64 qemu-aarch64)
if (NOT QF_AARCH64_CXX OR NOT QF_QEMU_AARCH64)
    message(FATAL_ERROR "qforge: the ARM64 build needs Debian's g++-aarch64-linux-gnu and qemu-user "
                        "(scripts/setup.sh tests installs them), or configure with -DQF_ARM64=OFF")
endif ()

include(ExternalProject)
set(arm64_dir ${PROJECT_BINARY_DIR}/aarch64)
ExternalProject_Add(qforge_aarch64
    SOURCE_DIR ${PROJECT_SOURCE_DIR}
    BINARY_DIR ${arm64_dir}
    CMAKE_GENERATOR ${CMAKE_GENERATOR}
    CMAKE_ARGS -DCMAKE_TOOLCHAIN_FILE=${CMAKE_CURRENT_LIST_DIR}/aarch64-linux-gnu.cmake
               -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE}
               -DHalideHelpers_DIR=${HalideHelpers_DIR}
               -Dqforge-halide_generators_ROOT=${PROJECT_BINARY_DIR}/cmake
               -DQF_JSON_INCLUDE=${QF_JSON_INCLUDE}
    BUILD_ALWAYS ON
    INSTALL_COMMAND ""
    DEPENDS qforge_generators)

# The cross build's tests, included in this build's ctest run.
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/aarch64_tests.cmake CONTENT
     "subdirs(\"${arm64_dir}\")\n")
set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY TEST_INCLUDE_FILES
             ${PROJECT_BINARY_DIR}/aarch64_tests.cmake)
