# Fuzz harness for a manager server's request handling, included by tests/CMakeLists.txt.
# The standalone driver (default build) runs the seed corpus (make_manager_corpus.py)
# and seeded mutations for a bounded time: ctest fuzz_manager_smoke.
# -DMP_FUZZ=ON with clang (Linux) adds fuzz_manager_libfuzzer (coverage-guided; not in CI):
#   ./tests/fuzz_manager_libfuzzer -max_total_time=600 ../tests/fuzz/corpus_manager
add_executable(fuzz_manager fuzz/fuzz_manager.c)
target_link_libraries(fuzz_manager PRIVATE multiproc::multiproc_static)
target_include_directories(fuzz_manager PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_options(fuzz_manager PRIVATE ${MP_WARN})

add_test(NAME fuzz_manager_smoke
  COMMAND fuzz_manager --seconds ${MP_FUZZ_SECONDS} --seed 20261207
          ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus_manager)
set_tests_properties(fuzz_manager_smoke PROPERTIES LABELS common TIMEOUT 300)
if(MP_TEST_ENV)
  set_tests_properties(fuzz_manager_smoke PROPERTIES ENVIRONMENT "${MP_TEST_ENV}")
endif()

if(MP_FUZZ AND NOT WIN32)
  if(CMAKE_C_COMPILER_ID MATCHES "Clang")
    add_executable(fuzz_manager_libfuzzer fuzz/fuzz_manager.c)
    target_link_libraries(fuzz_manager_libfuzzer PRIVATE multiproc::multiproc_static)
    target_include_directories(fuzz_manager_libfuzzer PRIVATE ${PROJECT_SOURCE_DIR})
    target_compile_definitions(fuzz_manager_libfuzzer PRIVATE MP_FUZZ_LIBFUZZER)
    target_compile_options(fuzz_manager_libfuzzer PRIVATE -fsanitize=fuzzer,address,undefined ${MP_WARN})
    target_link_options(fuzz_manager_libfuzzer PRIVATE -fsanitize=fuzzer,address,undefined)
  endif()
endif()
