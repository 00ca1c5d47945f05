/* The start methods compiled on posix: default first (forkserver, as Python 3.14). */
#include "../backends/backend.h"

const struct mp_backend_ops *const mp__platform_backends[] = {
    &mp__backend_forkserver,
    &mp__backend_spawn,
    &mp__backend_fork,
#ifdef MP_HAVE_APR
    &mp__backend_apr,
#endif
    &mp__backend_dummy,
    NULL,
};

const char *const mp__platform_aliases[][2] = {{NULL, NULL}};
