# `cmake --install` yields a CMake package: find_package(qforge) gives
# qforge::qforge, one static library holding the runtime, every generated
# kernel and Halide's runtime, so consumers need neither Halide nor LLVM.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

get_property(kernel_libs GLOBAL PROPERTY QF_KERNEL_LIBS)
set(bundle ${CMAKE_CURRENT_BINARY_DIR}/bundle/libqforge.a)
set(mri "create ${bundle}\naddlib $<TARGET_FILE:qforge>\n")
foreach (lib IN LISTS kernel_libs)
    string(APPEND mri "addlib $<TARGET_FILE:${lib}>\n")
endforeach ()
get_property(cutlass_libs GLOBAL PROPERTY QF_CUTLASS_LIBS)  # runtime/cuda
foreach (lib IN LISTS cutlass_libs)
    string(APPEND mri "addlib ${lib}\n")
endforeach ()
string(APPEND mri "save\nend\n")
file(GENERATE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/bundle.mri CONTENT "${mri}")
add_custom_command(OUTPUT ${bundle}
                   COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/bundle
                   COMMAND ${CMAKE_COMMAND} -E rm -f ${bundle}
                   COMMAND ${CMAKE_AR} -M < ${CMAKE_CURRENT_BINARY_DIR}/bundle.mri
                   DEPENDS qforge ${kernel_libs} ${cutlass_libs} ${CMAKE_CURRENT_BINARY_DIR}/bundle.mri
                   COMMENT "Bundling the runtime and every kernel into one libqforge.a")
add_custom_target(qforge_bundle ALL DEPENDS ${bundle})

install(FILES ${bundle} DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/qforge DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS qforge_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
configure_package_config_file(qforgeConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/qforgeConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/qforge)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/qforgeConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/qforgeConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/qforgeConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/qforge)
