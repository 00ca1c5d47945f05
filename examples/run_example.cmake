# Runs one example as a test: cmake -DEXE=<program> -DMETHOD=<start method>
#   -DEXPECT=<regex> [-DEMULATOR=<wine wrapper>] -P run_example.cmake
# Passes when the example exits with 0, its output matches EXPECT and no sanitizer
# report appears (ctest's PASS_REGULAR_EXPRESSION alone would ignore the exit code).
execute_process(COMMAND ${EMULATOR} "${EXE}" "${METHOD}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out TIMEOUT 240)
message("${out}")
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "example ${EXE} ${METHOD}: exit code ${rc}")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "example ${EXE} ${METHOD}: no line matches \"${EXPECT}\"")
endif()
if(out MATCHES "(LeakSanitizer|AddressSanitizer|runtime error:)")
  message(FATAL_ERROR "example ${EXE} ${METHOD}: a sanitizer report")
endif()
