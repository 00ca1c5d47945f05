# Every public header compiles on its own, included by tests/CMakeLists.txt. For each of
# include/multiproc.h, include/multiproc/*.h and the generated multiproc/version.h, a
# source file written at configure time includes that header and nothing else (twice:
# the include guard holds; then one declaration of plain int, since ISO C forbids an
# empty translation unit and export.h and version.h declare nothing); multiproc.h is
# compiled as C++ too. Strict ISO C11 / C++17 with -Wpedantic, as a consumer of the
# shared library sees the headers (no MP_STATIC).
# The check is the build of mp_header_check, which mp_tests depends on; nothing runs.
file(GLOB mp_public_headers RELATIVE ${PROJECT_SOURCE_DIR}/include CONFIGURE_DEPENDS
  ${PROJECT_SOURCE_DIR}/include/*.h ${PROJECT_SOURCE_DIR}/include/multiproc/*.h)
list(APPEND mp_public_headers multiproc/version.h)
list(REMOVE_DUPLICATES mp_public_headers) # an in-source build globs version.h too

set(mp_header_check_sources "")
foreach(header IN LISTS mp_public_headers)
  string(MAKE_C_IDENTIFIER "${header}" id)
  set(src ${CMAKE_CURRENT_BINARY_DIR}/header_check/${id}.c)
  file(CONFIGURE OUTPUT ${src} @ONLY
    CONTENT "#include <${header}>\n#include <${header}>\ntypedef int mp_header_check;\n")
  list(APPEND mp_header_check_sources ${src})
endforeach()
set(src ${CMAKE_CURRENT_BINARY_DIR}/header_check/multiproc_h_cxx.cc)
file(CONFIGURE OUTPUT ${src} CONTENT "#include <multiproc.h>\n#include <multiproc.h>\n" @ONLY)
list(APPEND mp_header_check_sources ${src})

add_library(mp_header_check OBJECT ${mp_header_check_sources})
target_link_libraries(mp_header_check PRIVATE multiproc::multiproc)
set_target_properties(mp_header_check PROPERTIES C_EXTENSIONS OFF CXX_EXTENSIONS OFF)
if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(mp_header_check PRIVATE -Wall -Wextra -Wpedantic)
endif()
add_dependencies(mp_tests mp_header_check)
