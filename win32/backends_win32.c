/* The start methods a Windows build offers, default first (backends/registry.c reads
 * this table). "spawn" is an alias, so portable code asking for spawn runs here. */
#include "../backends/backend.h"

const struct mp_backend_ops *const mp__platform_backends[] = {
    &mp__backend_win32,
    &mp__backend_dummy,
    NULL,
};

const char *const mp__platform_aliases[][2] = {
    {"spawn", "win32"},
    {NULL, NULL},
};
