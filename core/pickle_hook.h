/* A white-box counter of the pickle decoder (core/pickle_load.c), for tests (plain C,
 * also included from C++). */
#ifndef MP_CORE_PICKLE_HOOK_H
#define MP_CORE_PICKLE_HOOK_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What the last mp_value_loads on this thread charged before it returned (success or
 *  not): the values it made (memo copies and MARKs included) and the bytes it copied
 *  (str/bytes payload, object names). */
void mp__pickle_last_cost(size_t *values, size_t *bytes);

#ifdef __cplusplus
}
#endif
#endif
