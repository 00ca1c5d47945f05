# Fuzz harness for the post-authentication frame reader, included by tests/CMakeLists.txt.
# The standalone driver (default build) runs the seed corpus and seeded mutations for a
# bounded time: ctest fuzz_frame_smoke. With GNU-style linkers it wraps malloc, calloc
# and realloc to check that no header makes the reader allocate beyond its bound.
# -DMP_FUZZ=ON with clang (Linux) adds fuzz_frame_libfuzzer (coverage-guided; not in CI):
#   ./tests/fuzz_frame_libfuzzer -max_total_time=600 -malloc_limit_mb=5 ../tests/fuzz/corpus_frame
add_executable(fuzz_frame fuzz/fuzz_frame.c)
target_link_libraries(fuzz_frame PRIVATE multiproc::multiproc_static)
target_compile_options(fuzz_frame PRIVATE ${MP_WARN})
if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang" AND NOT APPLE)
  target_compile_definitions(fuzz_frame PRIVATE MP_FUZZ_WRAP_ALLOC)
  target_link_options(fuzz_frame PRIVATE
    -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc)
endif()

add_test(NAME fuzz_frame_smoke
  COMMAND fuzz_frame --seconds ${MP_FUZZ_SECONDS} --seed 20261126
          ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus_frame)
set_tests_properties(fuzz_frame_smoke PROPERTIES LABELS common TIMEOUT 300)
if(MP_TEST_ENV)
  set_tests_properties(fuzz_frame_smoke PROPERTIES ENVIRONMENT "${MP_TEST_ENV}")
endif()

if(MP_FUZZ AND NOT WIN32)
  if(CMAKE_C_COMPILER_ID MATCHES "Clang")
    # The reader's sources are compiled into the fuzzer so libFuzzer sees their
    # coverage; the rest of the library is linked as usual.
    add_executable(fuzz_frame_libfuzzer fuzz/fuzz_frame.c
      ${PROJECT_SOURCE_DIR}/core/connection.c
      ${PROJECT_SOURCE_DIR}/linux/conn_linux.c)
    target_link_libraries(fuzz_frame_libfuzzer PRIVATE multiproc::multiproc_static)
    target_include_directories(fuzz_frame_libfuzzer PRIVATE
      ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/core)
    target_compile_definitions(fuzz_frame_libfuzzer PRIVATE MP_STATIC MP_BUILDING
      MP_FUZZ_LIBFUZZER _GNU_SOURCE)
    target_compile_options(fuzz_frame_libfuzzer PRIVATE -fsanitize=fuzzer,address,undefined ${MP_WARN})
    target_link_options(fuzz_frame_libfuzzer PRIVATE -fsanitize=fuzzer,address,undefined)
  endif()
endif()
