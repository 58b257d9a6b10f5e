# The fuzzers (libFuzzer, in the ASan+UBSan build): the GGUF reader, the
# safetensors reader and the CLI's file-opening paths. The test command runs
# each for QF_FUZZ_SECONDS from seeds that qforge_fuzz_seeds writes;
# scripts/fuzz.sh runs them as long as you like. Included by
# tests/CMakeLists.txt.
add_executable(qforge_fuzz_seeds ${CMAKE_CURRENT_LIST_DIR}/make_seeds.cpp)
target_link_libraries(qforge_fuzz_seeds PRIVATE qforge)

set(fuzz_dir ${PROJECT_BINARY_DIR}/fuzz)
add_test(NAME ${test_prefix}fuzz.seeds COMMAND qforge_fuzz_seeds ${fuzz_dir}/seeds)
set_tests_properties(${test_prefix}fuzz.seeds PROPERTIES FIXTURES_SETUP fuzz_seeds)

foreach (name IN ITEMS gguf safetensors cli)
    add_executable(qforge_fuzz_${name} ${CMAKE_CURRENT_LIST_DIR}/fuzz_${name}.cpp)
    target_include_directories(qforge_fuzz_${name} PRIVATE ${CMAKE_CURRENT_LIST_DIR})
    target_link_options(qforge_fuzz_${name} PRIVATE -fsanitize=fuzzer)
    if (name STREQUAL "cli")
        target_link_libraries(qforge_fuzz_${name} PRIVATE qforge_commands)
    else ()
        target_link_libraries(qforge_fuzz_${name} PRIVATE qforge_internal)
    endif ()
    # A fresh corpus each run (the seeds, then what this run finds);
    # -timeout: one input running 10 s is a finding (a hang).
    add_test(NAME ${test_prefix}fuzz.${name}
             COMMAND ${CMAKE_CURRENT_LIST_DIR}/run_fuzzer.sh $<TARGET_FILE:qforge_fuzz_${name}> ${fuzz_dir}/seeds/${name}
                     ${fuzz_dir}/corpus/${name} ${QF_FUZZ_SECONDS})
    set_tests_properties(${test_prefix}fuzz.${name} PROPERTIES FIXTURES_REQUIRED fuzz_seeds TIMEOUT 900)
endforeach ()
