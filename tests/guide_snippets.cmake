# The complete programs of docs/guide.md compile and run (ctest guide_snippets):
#   cmake -DROOT=<source dir> -DOUT=<work dir> -DCC=<C compiler> -DINCLUDES=<dirs>
#         -DLIB=<libmultiproc.so> "-DFLAGS=<extra compile and link flags>"
#         "-DMETHODS=<start methods>" -DPYTHON=<python3> -P guide_snippets.cmake
# scripts/check_guide_snippets.py checks the names the guide cites and writes each
# block marked /* guide: program */ to OUT; each is then compiled here, at test time
# (an edit of the guide needs no reconfigure), with -Wall -Wextra -Werror against the
# shared library, and run once per start method (MP_START_METHOD). The test fails
# when a program does not compile, exits non-zero, or prints a sanitizer report.
execute_process(COMMAND ${PYTHON} ${ROOT}/scripts/check_guide_snippets.py --root ${ROOT} --out ${OUT}
  RESULT_VARIABLE rc OUTPUT_VARIABLE programs ERROR_VARIABLE err)
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "check_guide_snippets.py failed (${rc}):\n${err}")
endif()
string(STRIP "${programs}" programs)
string(REPLACE "\n" ";" programs "${programs}")
separate_arguments(flags UNIX_COMMAND "${FLAGS}")
get_filename_component(libdir "${LIB}" DIRECTORY)
set(incs "")
foreach(dir IN LISTS INCLUDES)
  list(APPEND incs "-I${dir}")
endforeach()

set(failed "")
foreach(src IN LISTS programs)
  get_filename_component(name "${src}" NAME_WE)
  set(exe "${OUT}/${name}")
  execute_process(COMMAND ${CC} -std=c11 -Wall -Wextra -Werror ${flags} ${incs} "${src}"
                          -o "${exe}" "${LIB}" "-Wl,-rpath,${libdir}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc STREQUAL "0")
    message("${name} (${src}) does not compile:\n${out}")
    list(APPEND failed "${name}: compile")
    continue()
  endif()
  foreach(method IN LISTS METHODS)
    set(ENV{MP_START_METHOD} "${method}")
    execute_process(COMMAND "${exe}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out
      TIMEOUT 120)
    message("${name} on ${method}: exit ${rc}\n${out}")
    if(NOT rc STREQUAL "0")
      list(APPEND failed "${name}/${method}: exit ${rc}")
    elseif(out MATCHES "(LeakSanitizer|AddressSanitizer|ThreadSanitizer|runtime error:)")
      list(APPEND failed "${name}/${method}: sanitizer report")
    endif()
  endforeach()
endforeach()
if(failed)
  string(REPLACE ";" "\n  " failed "${failed}")
  message(FATAL_ERROR "docs/guide.md programs failed:\n  ${failed}")
endif()
list(LENGTH programs n)
message("docs/guide.md: ${n} programs compiled and ran on: ${METHODS}")
