# Fuzz harness for the value codec, included by tests/CMakeLists.txt. The standalone
# driver (default build) runs the seed corpus and seeded random mutations for a
# bounded time: ctest fuzz_value_smoke.
# -DMP_FUZZ=ON with clang adds fuzz_value_libfuzzer (coverage-guided; not in CI):
#   ./tests/fuzz_value_libfuzzer -max_total_time=600 ../tests/fuzz/corpus_value
option(MP_FUZZ "Build the libFuzzer variant of the fuzz harnesses (clang)" OFF)

add_executable(fuzz_value fuzz/fuzz_value.c)
target_link_libraries(fuzz_value PRIVATE multiproc::multiproc_static)
target_compile_options(fuzz_value PRIVATE ${MP_WARN})

if(WIN32)
  set(MP_FUZZ_SECONDS 10) # under Wine: slower, and the same code as on Linux
else()
  set(MP_FUZZ_SECONDS 20)
endif()
add_test(NAME fuzz_value_smoke
  COMMAND fuzz_value --seconds ${MP_FUZZ_SECONDS} --seed 20261126
          ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus_value)
set_tests_properties(fuzz_value_smoke PROPERTIES LABELS common TIMEOUT 300)
if(MP_TEST_ENV)
  set_tests_properties(fuzz_value_smoke PROPERTIES ENVIRONMENT "${MP_TEST_ENV}")
endif()

if(MP_FUZZ)
  if(CMAKE_C_COMPILER_ID MATCHES "Clang")
    # The codec's sources are compiled into the fuzzer itself so libFuzzer sees their
    # coverage; the one OS function they need comes from fuzz_os_stub.c.
    add_executable(fuzz_value_libfuzzer fuzz/fuzz_value.c fuzz/fuzz_os_stub.c
      ${PROJECT_SOURCE_DIR}/core/value.c
      ${PROJECT_SOURCE_DIR}/core/pickle_dump.c
      ${PROJECT_SOURCE_DIR}/core/pickle_load.c
      ${PROJECT_SOURCE_DIR}/core/error.c
      ${PROJECT_SOURCE_DIR}/core/wire.c)
    target_include_directories(fuzz_value_libfuzzer PRIVATE
      ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/core)
    target_compile_definitions(fuzz_value_libfuzzer PRIVATE MP_STATIC MP_BUILDING
      MP_FUZZ_LIBFUZZER _GNU_SOURCE)
    target_compile_options(fuzz_value_libfuzzer PRIVATE -fsanitize=fuzzer,address,undefined ${MP_WARN})
    target_link_options(fuzz_value_libfuzzer PRIVATE -fsanitize=fuzzer,address,undefined)
  else()
    message(WARNING "MP_FUZZ=ON needs clang (CMAKE_C_COMPILER=clang); fuzz_value_libfuzzer is not built")
  endif()
endif()
