/* The start-method backend vtable and registry. */
#ifndef MP_BACKENDS_BACKEND_H
#define MP_BACKENDS_BACKEND_H

#include "../core/internal.h"

/* Append-only: a new slot bumps the version; core checks it before a newer slot. */
#define MP_BACKEND_OPS_VERSION 1

enum {
    MP_BACKEND_THREADS = 1u << 0,    /* children are threads of this process (dummy) */
    MP_BACKEND_SAME_IMAGE = 1u << 1, /* children share this address layout (fork, dummy) */
};

/** What core asks a backend to start. */
typedef struct mp__start_req {
    const void *payload;         /* encoded launch (mp__launch_decode in the child) */
    size_t len;
    const mp_os_handle *handles; /* to transfer, in order; [0] is the parent sentinel */
    size_t nhandles;
    const char *executable;      /* exec-based backends run this program */
    bool daemon;                 /* the child must die with this process */
} mp__start_req;

struct mp_backend_ops {
    int version;      /* MP_BACKEND_OPS_VERSION */
    const char *name; /* "fork", ... */
    unsigned flags;   /* MP_BACKEND_* */
    /** Starts a child from req. On success sets p->pid, p->sentinel and p->bk; the
     *  child must end up calling mp__child_run with the payload decoded and the
     *  handles delivered in order (the handle-transfer hook: inherit, dup2, SCM_RIGHTS,
     *  DuplicateHandle or a duplicate in-process). Returns the child's bootstrap
     *  error (MP_ERESOLVE...) when it reports one. */
    int (*start)(mp_process *p, const mp__start_req *req);
    /** Waits up to timeout for the end; on 0 sets p->exitcode (Python's convention). */
    int (*wait)(mp_process *p, double timeout);
    /** Sends MP__SIG_*; NULL means MP_ENOTSUP. */
    int (*signal)(mp_process *p, int sig);
    /** Releases p->bk and the sentinel. */
    void (*release)(mp_process *p);
    /** In a child: mp_init met this backend's marker (argv[1] == "--mp-child",
     *  argv[2] == name). Never returns on success. NULL if the backend execs nothing. */
    int (*child_main)(int argc, char **argv);
    /** Process exit: stop helper processes (the forkserver). May be NULL. */
    void (*shutdown)(void);
};

/** The registry (backends/registry.c). */
const struct mp_backend_ops *mp__backend_find(const char *name);
/** All registered, default first, NULL-terminated. */
const struct mp_backend_ops *const *mp__backend_all(void);
/** Finds the context of an ops table. */
mp_context *mp__backend_context(const struct mp_backend_ops *ops);

/* Wrappers: core reaches backends only through these (asserts, version checks). */
int mp__backend_start(mp_process *p, const mp__start_req *req);
int mp__backend_wait(mp_process *p, double timeout);
int mp__backend_signal(mp_process *p, int sig);
void mp__backend_release(mp_process *p);

/* Backends compiled for this platform (each defined in its own file). */
extern const struct mp_backend_ops mp__backend_fork;
extern const struct mp_backend_ops mp__backend_spawn;
extern const struct mp_backend_ops mp__backend_forkserver;
extern const struct mp_backend_ops mp__backend_apr;
extern const struct mp_backend_ops mp__backend_win32;
extern const struct mp_backend_ops mp__backend_dummy;

#endif
