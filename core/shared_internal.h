/* Shared between core/sharedctypes.c, core/shared_memory.c, core/shareable_list.c and
 * core/objtypes.c. */
#ifndef MP_CORE_SHARED_INTERNAL_H
#define MP_CORE_SHARED_INTERNAL_H

#include "internal.h"

extern const mp__objtype mp__objtype_shared_array, mp__objtype_shm;

#endif
