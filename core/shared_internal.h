/* Shared between core/sharedctypes.c, core/shared_memory.c, core/shareable_list.c and
 * core/objtypes.c. */
#ifndef MP_CORE_SHARED_INTERNAL_H
#define MP_CORE_SHARED_INTERNAL_H

#include "internal.h"

extern const mp__objtype mp__objtype_shared_array, mp__objtype_shm;

/** MP_EINVAL unless name is a block name every system takes (1..255 bytes, no '/'). */
int mp__shm_check_name(const char *name);

#endif
