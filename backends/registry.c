/* The start-method registry: the platform's table (posix/ or win32/ decides what was
 * compiled), lookup by name with the platform's aliases, and the choke-point wrappers
 * through which core reaches a backend. */
#include <assert.h>
#include <string.h>

#include "backend.h"

/* A context is its slot: index i stands for mp__platform_backends[i]. */
struct mp_context {
    char slot;
};

/* Defined by posix/backends_posix.c or win32/backends_win32.c: default first. */
extern const struct mp_backend_ops *const mp__platform_backends[];
/* {alias, name} pairs, {NULL, NULL}-terminated: "spawn" names win32 on Windows. */
extern const char *const mp__platform_aliases[][2];

#define MP__MAX_BACKENDS 8
static struct mp_context contexts[MP__MAX_BACKENDS];

const struct mp_backend_ops *const *mp__backend_all(void) { return mp__platform_backends; }

const struct mp_backend_ops *mp__backend_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; mp__platform_aliases[i][0]; i++)
        if (strcmp(name, mp__platform_aliases[i][0]) == 0) name = mp__platform_aliases[i][1];
    for (const struct mp_backend_ops *const *b = mp__platform_backends; *b; b++)
        if (strcmp((*b)->name, name) == 0) return *b;
    return NULL;
}

mp_context *mp__backend_context(const struct mp_backend_ops *ops) {
    for (size_t i = 0; i < MP__MAX_BACKENDS && mp__platform_backends[i]; i++) {
        if (mp__platform_backends[i] == ops) return &contexts[i];
    }
    return NULL;
}

static const struct mp_backend_ops *ops_of(const mp_process *p) {
    assert(p && p->ops && p->ops->version >= 1 && p->ops->version <= MP_BACKEND_OPS_VERSION);
    return p->ops;
}

int mp__backend_start(mp_process *p, const mp__start_req *req) {
    const struct mp_backend_ops *ops = ops_of(p);
    if (!ops->start) return mp__err(MP_ENOTSUP, "start method '%s' cannot start processes", ops->name);
    return ops->start(p, req);
}

int mp__backend_wait(mp_process *p, double timeout) {
    return ops_of(p)->wait(p, timeout);
}

int mp__backend_signal(mp_process *p, int sig) {
    const struct mp_backend_ops *ops = ops_of(p);
    if (!ops->signal)
        return mp__err(MP_ENOTSUP, "start method '%s' cannot signal a process", ops->name);
    return ops->signal(p, sig);
}

void mp__backend_release(mp_process *p) {
    const struct mp_backend_ops *ops = ops_of(p);
    if (ops->release) ops->release(p);
}
