/* The start-method contract. The core owns it: a backend is one `static const struct
 * mp_backend_ops`, registered by name (core/backend.c), and the core reaches it only
 * through the mp__backend_* wrappers below, which check the version and every slot.
 * A backend never sees a process object: start fills an mp__started, wait hands back
 * the exit code, and the core alone writes mp_process.
 *
 * Backends include this header and the OS layer's core/os*.h, never each other. */
#ifndef MP_CORE_BACKEND_H
#define MP_CORE_BACKEND_H

#include "launch.h"

/* Append-only: a new slot bumps the version; the core checks it before a newer slot.
 * Version 2: start/wait/signal/release work on the backend's own state, not on
 * mp_process. Registration refuses any other version. */
#define MP_BACKEND_OPS_VERSION 2

/* Signals for the signal slot. */
enum { MP__SIG_TERM = 1, MP__SIG_KILL = 2, MP__SIG_INT = 3 };

/** What the core asks a backend to start. */
typedef struct mp__start_req {
    const void *payload; /* encoded launch (mp__launch_decode in the child) */
    size_t len;
    const mp_os_handle *handles; /* to transfer, in order; [0] is the parent sentinel */
    size_t nhandles;
    const char *executable; /* exec-based backends run this program */
    bool daemon;            /* the child must die with this process */
    bool plain_args;        /* no library object among the arguments: a child of this
                               very image (fork) cannot fail its bootstrap, so a backend
                               may skip waiting for its report */
} mp__start_req;

/** What a backend tells the core about a child it started. */
typedef struct mp__started {
    int64_t pid;           /* the child's pid (a thread id on dummy) */
    mp_os_handle sentinel; /* ready once the child has ended; owned by state */
    void *state;           /* the backend's own, handed back to wait/signal/release */
} mp__started;

struct mp_backend_ops {
    int version;      /* MP_BACKEND_OPS_VERSION */
    const char *name; /* "fork", ...: unique in the registry */
    unsigned flags;   /* MP_BACKEND_* */
    /** Starts a child from req and fills *out. The child must end up calling
     *  mp__child_run with the payload decoded and the handles delivered in order (the
     *  handle-transfer hook: inherit, dup2, SCM_RIGHTS, DuplicateHandle or a duplicate
     *  in-process), and start returns only once the child has reported (mp__report_*)
     *  whether its bootstrap succeeded: its error is start's error. On failure no
     *  child is left running and *out is untouched. Required. */
    int (*start)(const mp__start_req *req, mp__started *out);
    /** Waits up to timeout for the end: 0 and *exitcode (Python's convention: the
     *  exit status, or -signal), or MP_ETIMEDOUT without recording an error (it is a
     *  poll as often as a wait). Required. */
    int (*wait)(void *state, double timeout, int *exitcode);
    /** Sends MP__SIG_*; 0 when the child has ended already. NULL means MP_ENOTSUP. */
    int (*signal)(void *state, int sig);
    /** Frees state and its sentinel; reaps a child that ended but was not waited for.
     *  A child still running is left to run. Required. */
    void (*release)(void *state);
    /** In a child: mp_init met this backend's marker (argv[1] == "--mp-child",
     *  argv[2] == name). Never returns on success. NULL if the backend execs nothing. */
    int (*child_main)(int argc, char **argv);
    /** Process exit: stop helper processes (the forkserver). May be NULL. */
    void (*shutdown)(void);
};

/* ---- the registry (core/backend.c) ---- */

/** Adds ops under ops->name; make_default puts it first (the default start method
 *  unless MP_START_METHOD or mp_set_start_method says otherwise). MP_EEXIST for a name
 *  (or alias) taken, MP_EINVAL for a wrong version or a missing required slot,
 *  MP_EFULL past 16 backends. ops must stay valid for the life of the process. */
int mp__backend_register(const struct mp_backend_ops *ops, bool make_default);
/** Removes a backend registered before (tests): its context stays valid but is no
 *  longer found by name; MP_ENOENT when it is not registered. */
int mp__backend_unregister(const struct mp_backend_ops *ops);
/** Makes alias name the backend called target ("spawn" names win32 on Windows). */
int mp__backend_alias(const char *alias, const char *target);
/** The backend registered as name or alias, or NULL (nothing recorded). */
const struct mp_backend_ops *mp__backend_find(const char *name);
/** The context of a registered backend (NULL if it is not). */
mp_context *mp__backend_context(const struct mp_backend_ops *ops);
/** A context's backend (NULL for NULL). */
const struct mp_backend_ops *mp__context_ops(const mp_context *ctx);
/** The context used when none is given: the global start method, or the default. */
mp_context *mp__context_default(void);
/** A child takes the start method that made it as its own global one (Python's
 *  preparation data: what a context's child reports); a thread child (dummy) for
 *  itself only, and NULL ends that. */
void mp__backend_set_inherited(const char *name, bool thread);

/* ---- the choke point: the core calls backends only through these ---- */

int mp__backend_start(const struct mp_backend_ops *ops, const mp__start_req *req, mp__started *out);
int mp__backend_wait(const struct mp_backend_ops *ops, void *state, double timeout, int *exitcode);
int mp__backend_signal(const struct mp_backend_ops *ops, void *state, int sig);
void mp__backend_release(const struct mp_backend_ops *ops, void *state);
/** Runs ops' child_main (mp_init in an exec'd child); returns only on failure. */
int mp__backend_child_main(const struct mp_backend_ops *ops, int argc, char **argv);
/** Every registered backend's shutdown slot (process exit). */
void mp__backend_shutdown_all(void);

/* ---- what the core offers backends ---- */

/** In a child just forked from this process (fork, and the forkserver's children):
 *  forget the parent's process bookkeeping. */
void mp__process_after_fork_child(void);
/** End of a process (atexit, or a child's exit): terminate daemonic children, join
 *  the others, then every backend's shutdown slot. */
void mp__shutdown(void);

#endif
