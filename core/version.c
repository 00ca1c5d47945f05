/* The library's version at run time: MP_VERSION_STRING as it was when the library was
 * built (multiproc/version.h, generated from project(VERSION)). */
#include "multiproc.h"

const char *mp_version(void) { return MP_VERSION_STRING; }
