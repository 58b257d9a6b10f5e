# The TSan build's tests: the layers called from several threads, the
# kernels' thread pool and the weights' shared memory chunks (the rest of
# the suite runs under ASan+UBSan).
# Included by tests/CMakeLists.txt.
add_executable(qforge_tsan_tests test_concurrency.cpp test_layers.cpp test_threads.cpp test_weight_memory.cpp)
target_include_directories(qforge_tsan_tests PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(qforge_tsan_tests PRIVATE qforge_internal qforge_reference GTest::gtest_main)
gtest_discover_tests(qforge_tsan_tests ${discover_args} TEST_FILTER "Concurrency.*:Layers.Concurrent*:Threads.Pool*:WeightMemory.Threads*"
                     DISCOVERY_TIMEOUT 120 PROPERTIES TIMEOUT 900)
