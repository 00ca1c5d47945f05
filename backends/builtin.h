/* The start methods this build compiles (CMake's source lists decide), registered by
 * mp_init (backends/init.c) through backends/builtin_<os>.c. */
#ifndef MP_BACKENDS_BUILTIN_H
#define MP_BACKENDS_BUILTIN_H

#include "../core/backend.h"

/** Registers the build's start methods, default first, and their aliases. */
int mp__backends_register_builtin(void);

extern const struct mp_backend_ops mp__backend_fork;
extern const struct mp_backend_ops mp__backend_spawn;
extern const struct mp_backend_ops mp__backend_forkserver;
extern const struct mp_backend_ops mp__backend_apr;
extern const struct mp_backend_ops mp__backend_win32;
extern const struct mp_backend_ops mp__backend_dummy;

#endif
