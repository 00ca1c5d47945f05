/* The start methods of a Linux build: forkserver is the default, as in Python 3.14. */
#include "builtin.h"

int mp__backends_register_builtin(void) {
    int rc = mp__backend_register(&mp__backend_forkserver, true);
    if (!rc) rc = mp__backend_register(&mp__backend_spawn, false);
    if (!rc) rc = mp__backend_register(&mp__backend_fork, false);
#ifdef MP_HAVE_APR
    if (!rc) rc = mp__backend_register(&mp__backend_apr, false);
#endif
    if (!rc) rc = mp__backend_register(&mp__backend_dummy, false);
    return rc;
}
