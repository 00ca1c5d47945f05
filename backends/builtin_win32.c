/* The start methods of a Windows build: win32 is the default, and "spawn" names it, so
 * portable code that asks for spawn runs here unchanged. */
#include "builtin.h"

int mp__backends_register_builtin(void) {
    int rc = mp__backend_register(&mp__backend_win32, true);
    if (!rc) rc = mp__backend_register(&mp__backend_dummy, false);
    if (!rc) rc = mp__backend_alias("spawn", "win32");
    return rc;
}

/* Python's set_forkserver_preload is "really just a hint"; without a forkserver there
 * is nothing to preload into. */
int mp_set_forkserver_preload(const char *const *libs, size_t n) {
    if (n && !libs) return mp__err(MP_EINVAL, "mp_set_forkserver_preload: libs is NULL");
    for (size_t i = 0; i < n; i++)
        if (!libs[i]) return mp__err(MP_EINVAL, "mp_set_forkserver_preload: bad entry %zu", i);
    return 0;
}

int mp_set_forkserver_warm(int n) {
    if (n < 0 || n > 16) return mp__err(MP_EINVAL, "mp_set_forkserver_warm: %d is not in 0..16", n);
    return 0;
}
