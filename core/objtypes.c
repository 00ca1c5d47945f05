/* The library objects a child can rebuild from its arguments, found by name. Each
 * module that makes a passable object adds its type here. */
#include "internal.h"

const mp__objtype *const mp__objtypes[] = {
    NULL,
};
